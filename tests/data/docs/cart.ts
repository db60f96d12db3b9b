import { formatPrice } from "./format";

export interface LineItem {
  sku: string;
  quantity: number;
  unitPrice: number;
}

const TAX_RATE = 0.2;

export function subtotal(items: LineItem[]): number {
  return items.reduce((sum, item) => sum + item.quantity * item.unitPrice, 0);
}

export const total = (items: LineItem[], discount = 0): number => {
  const tmp = subtotal(items) * (1 - discount);
  return Math.round(tmp * (1 + TAX_RATE) * 100) / 100;
};

/**
 * Renders the cart as text lines.
 * @param items The cart's items.
 */
export function render(items: LineItem[]): string[] {
  return items.map((item) => `${item.sku} x${item.quantity} ${formatPrice(item.unitPrice)}`);
}

export class Cart {
  private items: LineItem[] = [];

  add(item: LineItem): void {
    const e = this.items.find((x) => x.sku === item.sku);
    if (e) {
      e.quantity += item.quantity;
    } else {
      this.items.push({ ...item });
    }
  }

  count(): number {
    return this.items.reduce((n, item) => n + item.quantity, 0);
  }
}
