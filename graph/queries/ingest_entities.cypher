// $rows: [{id, name, kind}]
UNWIND $rows AS row
MERGE (e:Entity {id: row.id})
SET e.name = row.name, e.kind = row.kind
