// Removes a user and their interactions, keeping the items' popularity right.
// $user_id. Unknown user: no effect.
MATCH (u:User {id: $user_id})
OPTIONAL MATCH (u)-[:RATED]->(i:Item)
WITH u, collect(i) AS items
DETACH DELETE u
WITH items
UNWIND items AS i
SET i.popularity = COUNT { (i)<-[:RATED]-(:User) }
