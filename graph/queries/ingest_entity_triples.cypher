// $rows: [{head_id, type, tail_id}]: entity-to-entity facts (triples.csv rows whose head
// is an entity, e.g. a brand based_in a country); `type` as in ingest_triples.
UNWIND $rows AS row
MATCH (h:Entity {id: row.head_id})
MATCH (t:Entity {id: row.tail_id})
MERGE (h)-[:$(row.type)]->(t)
