import React, {useMemo, useState} from 'react';
import {Image, StatusBar, StyleSheet, Text, View} from 'react-native';

import data from './data.json';
import Header from './src/components/Header';
import Counter from './src/components/Counter';
import TaskList from './src/components/TaskList';
import Greeting from './src/components/Greeting';
import {colors, spacing} from './src/theme';
import {summarize} from './src/utils/tasks';

export default function App() {
  const [tasks, setTasks] = useState(data.tasks);
  const summary = useMemo(() => summarize(tasks), [tasks]);

  const toggle = id =>
    setTasks(current =>
      current.map(task => (task.id === id ? {...task, done: !task.done} : task)),
    );

  return (
    <View style={styles.screen}>
      <StatusBar barStyle="dark-content" />
      <Header title={data.title} subtitle={summary} />
      <Image
        source={require('./assets/logo.png')}
        style={styles.logo}
        accessibilityLabel="HiveSync logo"
      />
      <Greeting name="preview tester" />
      <Counter initial={3} />
      <TaskList tasks={tasks} onToggle={toggle} />
      <Text style={styles.footer}>Built by the HiveSync preview bundler</Text>
    </View>
  );
}

const styles = StyleSheet.create({
  screen: {flex: 1, backgroundColor: colors.background, padding: spacing.medium},
  logo: {width: 64, height: 64, alignSelf: 'center', marginVertical: spacing.small},
  footer: {textAlign: 'center', color: colors.muted, marginTop: spacing.small},
});
