const TAX_RATE = 0.2;

export const total = (subtotal: number, discount = 0): number => {
  const tmp = subtotal * (1 - discount);
  return Math.round(tmp * (1 + TAX_RATE) * 100) / 100;
};
