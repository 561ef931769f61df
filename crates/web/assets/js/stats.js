// Filled in with the statistics page.
