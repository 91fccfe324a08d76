// One live interaction, idempotent (rag_rec/live/). $user_id, $item_id, $rating,
// $timestamp (unix seconds, or null: a repeated interaction keeps its time, a new one
// takes $now). An unknown user is created; an unknown item gives no row (the writer
// checks items first). Returns the outcome: created, updated or unchanged.
MATCH (i:Item {id: $item_id})
MERGE (u:User {id: $user_id})
WITH u, i
OPTIONAL MATCH (u)-[old:RATED]->(i)
WITH u, i, old IS NULL AS created, old.rating AS was_rating, old.timestamp AS was_time
MERGE (u)-[r:RATED]->(i)
SET r.rating = $rating, r.timestamp = coalesce($timestamp, r.timestamp, $now),
    i.popularity = coalesce(i.popularity, 0) + CASE WHEN created THEN 1 ELSE 0 END
RETURN CASE WHEN created THEN 'created'
            WHEN was_rating = r.rating AND was_time = r.timestamp THEN 'unchanged'
            ELSE 'updated' END AS outcome,
       r.timestamp AS timestamp
