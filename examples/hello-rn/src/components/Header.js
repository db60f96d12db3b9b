import React from 'react';
import {StyleSheet, Text, View} from 'react-native';

import {colors, spacing} from '../theme';

export default function Header({title, subtitle}) {
  return (
    <View style={styles.container}>
      <Text style={styles.title}>{title}</Text>
      <Text style={styles.subtitle}>{subtitle}</Text>
    </View>
  );
}

const styles = StyleSheet.create({
  container: {paddingVertical: spacing.large, borderBottomWidth: 2, borderColor: colors.primary},
  title: {fontSize: 28, fontWeight: '700', color: colors.text},
  subtitle: {fontSize: 14, color: colors.muted, marginTop: 4},
});
