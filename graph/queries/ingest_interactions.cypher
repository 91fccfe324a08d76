// $rows: [{user_id, item_id, rating, timestamp}]
UNWIND $rows AS row
MATCH (u:User {id: row.user_id})
MATCH (i:Item {id: row.item_id})
MERGE (u)-[r:RATED]->(i)
SET r.rating = row.rating, r.timestamp = row.timestamp
