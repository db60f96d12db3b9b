export type Task = {
  id: string;
  title: string;
  done: boolean;
};

export function countDone(tasks: ReadonlyArray<Task>): number {
  return tasks.filter(task => task.done).length;
}

export function summarize(tasks: ReadonlyArray<Task>): string {
  const done = countDone(tasks);
  return `${done} of ${tasks.length} tasks done`;
}
