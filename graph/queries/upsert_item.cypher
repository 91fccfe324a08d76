// Adds or updates an item (rag_rec/live/): its properties, and its KG links become
// exactly $links, old links no longer listed removed, entity degrees kept right.
// $item ({id, title, year, genres, abstract}), $links ([{type, entity_id}], `type` upper
// case, e.g. DIRECTED_BY), $entities ([{id, name, kind}]: entities the write creates,
// MERGEd first so its links reach them). Links to entities the graph does not hold are
// skipped (the writer resolves names to known or created entities first).
FOREACH (row IN $entities |
  MERGE (e:Entity {id: row.id})
  ON CREATE SET e.name = row.name, e.kind = row.kind, e.degree = 0)
MERGE (i:Item {id: $item.id})
SET i.title = $item.title, i.year = $item.year, i.genres = $item.genres,
    i.abstract = $item.abstract, i.popularity = coalesce(i.popularity, 0)
WITH i
CALL (i) {
  MATCH (i)-[old]->(e:Entity)
  WHERE NOT any(link IN $links WHERE link.entity_id = e.id AND link.type = type(old))
  DELETE old
  WITH DISTINCT e
  SET e.degree = COUNT { (e)<-[]-(:Item) }
}
WITH i
UNWIND $links AS link
MATCH (e:Entity {id: link.entity_id})
MERGE (i)-[:$(link.type)]->(e)
SET e.degree = COUNT { (e)<-[]-(:Item) }
