// Removes an item and its relationships, keeping its entities' degrees right; an entity
// left with no relationship at all (one a live write created for this item alone) goes
// with it. $item_id. Unknown item: no effect.
MATCH (i:Item {id: $item_id})
OPTIONAL MATCH (i)-[]->(e:Entity)
WITH i, collect(e) AS entities
DETACH DELETE i
WITH entities
UNWIND entities AS e
SET e.degree = COUNT { (e)<-[]-(:Item) }
WITH e
WHERE NOT (e)--()
DELETE e
