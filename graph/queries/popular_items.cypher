// Global popularity backfill. $exclude_item_ids, $limit.
MATCH (c:Item)
WHERE NOT c.id IN $exclude_item_ids
RETURN c.id AS item_id, c.title AS title, c.popularity AS popularity
ORDER BY popularity DESC, item_id
LIMIT $limit
