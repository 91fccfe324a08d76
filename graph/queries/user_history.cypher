// A user's rated items, newest first. $user_id, $limit.
// Unknown user: no rows.
MATCH (u:User {id: $user_id})-[r:RATED]->(i:Item)
RETURN i.id AS item_id, i.title AS title, r.rating AS rating, r.timestamp AS timestamp
ORDER BY r.timestamp DESC, i.id
LIMIT $limit
