import React, {useState} from 'react';
import {Pressable, StyleSheet, Text, View} from 'react-native';

import {colors, spacing} from '../theme';

export default function Counter({initial = 0}) {
  const [count, setCount] = useState(initial);
  return (
    <View style={styles.row}>
      <Pressable style={styles.button} onPress={() => setCount(count - 1)}>
        <Text style={styles.label}>-</Text>
      </Pressable>
      <Text style={styles.value}>Bees counted: {count}</Text>
      <Pressable style={styles.button} onPress={() => setCount(count + 1)}>
        <Text style={styles.label}>+</Text>
      </Pressable>
    </View>
  );
}

const styles = StyleSheet.create({
  row: {flexDirection: 'row', alignItems: 'center', justifyContent: 'center', marginVertical: spacing.small},
  button: {backgroundColor: colors.primary, borderRadius: 6, paddingHorizontal: spacing.medium, paddingVertical: spacing.small},
  label: {fontSize: 18, color: colors.text},
  value: {marginHorizontal: spacing.medium, fontSize: 16, color: colors.text},
});
