// Cold start: the most popular items linked to any of $entity_ids (e.g. entities of a
// new user's liked items or of a free-text profile), ranked by how many of the
// entities they match, then popularity. $entity_ids, $exclude_item_ids, $limit.
MATCH (e:Entity)<-[]-(c:Item)
WHERE e.id IN $entity_ids AND NOT c.id IN $exclude_item_ids
WITH c, count(DISTINCT e) AS matched, collect(DISTINCT e.name) AS entities
RETURN c.id AS item_id, c.title AS title, matched, c.popularity AS popularity, entities
ORDER BY matched DESC, popularity DESC, item_id
LIMIT $limit
