// Filled in with the region table.
