// An item and its KG neighbours. $item_id. Unknown item: no rows.
MATCH (i:Item {id: $item_id})
OPTIONAL MATCH (i)-[r]->(e:Entity)
RETURN i.id AS item_id, i.title AS title, i.year AS year, i.genres AS genres,
       i.popularity AS popularity, toLower(type(r)) AS relation, e.id AS entity_id,
       e.name AS entity_name, e.kind AS entity_kind
ORDER BY e.degree ASC, e.id
