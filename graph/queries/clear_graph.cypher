// Removes every node but the ingest bookkeeping, with its relationships, in batches (used
// when the graph switches to other data: another dataset, or a KG whose checked links
// changed). Runs as an auto-commit query.
MATCH (n) WHERE NOT n:Meta
CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS
