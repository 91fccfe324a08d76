// $rows: [{id, age, gender, occupation}]
UNWIND $rows AS row
MERGE (u:User {id: row.id})
SET u.age = row.age, u.gender = row.gender, u.occupation = row.occupation
