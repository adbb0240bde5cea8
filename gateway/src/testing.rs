//! Queries shared by the unit tests and the HTTP tests in `tests/`.

pub(crate) const USERS_PAGE_QUERY: &str = include_str!("../tests/queries/users_page.graphql");
pub(crate) const USER_PAGE_QUERY: &str = include_str!("../tests/queries/user_page.graphql");
pub(crate) const GRAPHIQL_INTROSPECTION_QUERY: &str =
    include_str!("../tests/queries/graphiql_introspection.graphql");

pub(crate) fn users_page_variables() -> serde_json::Value {
    serde_json::json!({
        "range": { "from": "2026-10-25T08:00:00Z", "to": "2026-11-24T08:00:00Z" },
        "search": "",
        "orderBy": { "field": "COST_SUM", "direction": "DESC" },
        "first": 50
    })
}

pub(crate) fn user_page_variables() -> serde_json::Value {
    serde_json::json!({
        "userId": "user-1",
        "range": { "from": "2026-10-25T08:00:00Z", "to": "2026-11-24T08:00:00Z" },
        "erroredOnly": false
    })
}
