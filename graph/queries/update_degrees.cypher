// Denormalised counts the candidate queries rank by: item popularity (ratings) and
// entity degree (items linked), so hub entities (a genre, a decade) can be down-weighted.
CALL () {
  MATCH (i:Item)
  SET i.popularity = COUNT { (i)<-[:RATED]-(:User) }
}
CALL () {
  MATCH (e:Entity)
  SET e.degree = COUNT { (e)<-[]-(:Item) }
}
