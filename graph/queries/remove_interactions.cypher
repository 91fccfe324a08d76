// $rows: [{user_id, item_id}] — the RATED relationships to delete (the build holds out
// each user's latest rating this way while it calibrates the scorer, then restores it).
UNWIND $rows AS row
MATCH (:User {id: row.user_id})-[r:RATED]->(:Item {id: row.item_id})
DELETE r
