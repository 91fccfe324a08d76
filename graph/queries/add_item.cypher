// A new item and its KG links, retrievable at once. $item ({id, title, year, genres,
// abstract}), $links ([{type, entity_id}] with `type` upper case, e.g. DIRECTED_BY).
// Links to entities the graph does not hold are skipped.
MERGE (i:Item {id: $item.id})
SET i.title = $item.title, i.year = $item.year, i.genres = $item.genres,
    i.abstract = $item.abstract, i.popularity = coalesce(i.popularity, 0)
WITH i
UNWIND $links AS link
MATCH (e:Entity {id: link.entity_id})
MERGE (i)-[:$(link.type)]->(e)
SET e.degree = COUNT { (e)<-[]-(:Item) }
