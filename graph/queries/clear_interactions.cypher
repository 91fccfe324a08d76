// Removes every RATED relationship in batches (used when the graph switches split,
// so that held-out interactions never stay behind). Runs as an auto-commit query.
MATCH ()-[r:RATED]->()
CALL (r) { DELETE r } IN TRANSACTIONS OF 20000 ROWS
