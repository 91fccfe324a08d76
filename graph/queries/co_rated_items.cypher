// Cold start, collaborative: items most often co-rated with $item_ids (a new user's liked
// items), excluding them. $item_ids, $limit.
MATCH (i:Item)<-[:RATED]-(:User)-[:RATED]->(c:Item)
WHERE i.id IN $item_ids AND NOT c.id IN $item_ids
RETURN c.id AS item_id, c.title AS title, count(*) AS score
ORDER BY score DESC, item_id
LIMIT $limit
