export const colors = {
  background: '#FFF8E1',
  primary: '#F9A825',
  text: '#212121',
  muted: '#757575',
  done: '#9E9E9E',
};

export const spacing = {
  small: 8,
  medium: 16,
  large: 24,
};
