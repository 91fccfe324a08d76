// A user's rated items, newest first (ties: the reverse of the dataset's item-id order, so
// reversed it is the oldest-first order the sources were trained on). $user_id, $limit.
// Unknown user: no rows.
MATCH (u:User {id: $user_id})-[r:RATED]->(i:Item)
RETURN i.id AS item_id, i.title AS title, r.rating AS rating, r.timestamp AS timestamp
ORDER BY r.timestamp DESC, i.id DESC
LIMIT $limit
