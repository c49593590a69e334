"""Reading runs back, local or W&B, behind one interface: status, best, compare, charts."""
