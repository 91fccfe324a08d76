// Facts linking each candidate to the history: readable triples
// (candidate)-[relation]->(entity)<-[history_relation]-(history item), at most
// $per_candidate per candidate, rarest entity first (a shared director says more than
// a shared genre), then the best-rated history item.
// $item_ids (candidates), $history_item_ids, $ratings (history item id -> rating,
// may be empty), $per_candidate.
MATCH (c:Item)-[r1]->(e:Entity)<-[r2]-(h:Item)
WHERE c.id IN $item_ids AND h.id IN $history_item_ids AND c <> h
WITH c, r1, e, r2, h, coalesce($ratings[h.id], 0.0) AS rating
ORDER BY c.id, e.degree ASC, rating DESC, h.id, e.id
WITH c, collect({
  relation: toLower(type(r1)), entity_id: e.id, entity_name: e.name,
  history_relation: toLower(type(r2)), history_item_id: h.id, history_title: h.title
})[..$per_candidate] AS facts
UNWIND facts AS f
RETURN c.id AS candidate_id, c.title AS candidate_title, f.relation AS relation,
       f.entity_id AS entity_id, f.entity_name AS entity_name,
       f.history_relation AS history_relation, f.history_item_id AS history_item_id,
       f.history_title AS history_title
