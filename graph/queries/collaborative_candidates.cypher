// Co-interaction: items rated by the $neighbours users whose histories overlap most
// with this user's, scored by summed overlap; never an item the user rated.
// $user_id, $neighbours, $limit. Unknown user: no rows.
MATCH (u:User {id: $user_id})-[:RATED]->(:Item)<-[:RATED]-(v:User)
WITH u, v, count(*) AS overlap
ORDER BY overlap DESC, v.id
LIMIT $neighbours
MATCH (v)-[:RATED]->(c:Item)
WHERE NOT (u)-[:RATED]->(c)
RETURN c.id AS item_id, c.title AS title, sum(overlap) AS score, count(v) AS users
ORDER BY score DESC, item_id
LIMIT $limit
