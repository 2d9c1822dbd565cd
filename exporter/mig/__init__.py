"""MIG hardware knowledge: profile catalogs per board and the placement rules. No I/O."""
