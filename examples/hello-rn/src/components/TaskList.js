import React from 'react';
import {FlatList, Pressable, StyleSheet, Text} from 'react-native';

import {colors, spacing} from '../theme';

function TaskRow({task, onToggle}) {
  return (
    <Pressable onPress={() => onToggle(task.id)} style={styles.row}>
      <Text style={[styles.title, task.done && styles.done]}>
        {task.done ? '\u2713 ' : '\u25CB '}
        {task.title}
      </Text>
    </Pressable>
  );
}

export default function TaskList({tasks, onToggle}) {
  return (
    <FlatList
      data={tasks}
      keyExtractor={task => task.id}
      renderItem={({item}) => <TaskRow task={item} onToggle={onToggle} />}
      ListEmptyComponent={<Text style={styles.empty}>Nothing to do in the hive</Text>}
    />
  );
}

const styles = StyleSheet.create({
  row: {paddingVertical: spacing.small, borderBottomWidth: StyleSheet.hairlineWidth, borderColor: colors.muted},
  title: {fontSize: 16, color: colors.text},
  done: {color: colors.done, textDecorationLine: 'line-through'},
  empty: {textAlign: 'center', color: colors.muted},
});
