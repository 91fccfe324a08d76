// Cold start: items linked to any of $entity_ids (e.g. entities of a new user's liked
// items or of a free-text profile). Each matched entity counts 1/log2(1 + its degree), as
// in kg_path_candidates, so a shared director outweighs a shared genre; ties go to the
// more popular item. $entity_ids, $exclude_item_ids, $limit.
MATCH (e:Entity)<-[]-(c:Item)
WHERE e.id IN $entity_ids AND NOT c.id IN $exclude_item_ids
WITH c, count(DISTINCT e) AS matched, sum(1.0 / log(1.0 + e.degree) * log(2.0)) AS score,
     collect(DISTINCT e.name) AS entities
RETURN c.id AS item_id, c.title AS title, matched, score, c.popularity AS popularity, entities
ORDER BY score DESC, popularity DESC, item_id
LIMIT $limit
