// Items reachable from the user's history through shared KG entities:
// (user)-[:RATED]->(h)-[r1]->(e:Entity)<-[r2]-(candidate), never an item the user rated.
// Each path counts 1/log2(1 + entity degree), so a shared director outweighs a shared
// decade; entities linked to more than $max_entity_degree items are skipped as hubs.
// $user_id, $max_entity_degree, $limit. Unknown user: no rows.
MATCH (u:User {id: $user_id})-[:RATED]->(h:Item)-[]->(e:Entity)
WHERE e.degree <= $max_entity_degree
MATCH (e)<-[r2]-(c:Item)
WHERE c <> h
WITH u, c, count(*) AS paths, sum(1.0 / log(1.0 + e.degree) * log(2.0)) AS score,
     collect(DISTINCT toLower(type(r2))) AS relations
WHERE NOT (u)-[:RATED]->(c)
RETURN c.id AS item_id, c.title AS title, paths, score, relations
ORDER BY score DESC, item_id
LIMIT $limit
