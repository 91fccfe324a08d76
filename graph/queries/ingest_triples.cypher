// $rows: [{item_id, type, entity_id}]; `type` is the relation in upper case
// (directed_by -> DIRECTED_BY). The type is a parameter too: Neo4j 5.26 dynamic types.
UNWIND $rows AS row
MATCH (i:Item {id: row.item_id})
MATCH (e:Entity {id: row.entity_id})
MERGE (i)-[:$(row.type)]->(e)
