import React from 'react';
import {StyleSheet, Text, View} from 'react-native';

import {colors, spacing} from '../theme';

type GreetingProps = {
  name: string;
  emoji?: string;
};

export default function Greeting({name, emoji = '\u{1F41D}'}: GreetingProps): React.JSX.Element {
  const message: string = `Greetings from TypeScript, ${name}!`;
  return (
    <View style={styles.card}>
      <Text style={styles.text}>
        {emoji} {message}
      </Text>
    </View>
  );
}

const styles = StyleSheet.create({
  card: {backgroundColor: '#FFFFFF', borderRadius: 8, padding: spacing.medium, marginVertical: spacing.small},
  text: {fontSize: 16, color: colors.text},
});
