//! The schema, its limits, and the routing of introspection.
//!
//! Complexity: every field costs 1 plus its children, a `trend` or `activity` series 5, and a
//! field that makes its own users-query call (`usersOverview`, `users`, `userDetail`,
//! `sessions`, top-level and nested `breakdowns`) 100. A budget of 1 000 fits the users page
//! (257: two calls) and the user page (388: three calls) with room to spare, and stops a
//! request from fanning out into more than nine calls or thousands of aliased fields.
//!
//! Depth: data queries are at most 10 deep; the pages need 5. GraphiQL's and codegen's standard
//! introspection query is 15 deep (nine levels of `ofType`), so an operation that selects
//! only introspection fields runs on a twin schema that answers introspection alone, with a
//! depth limit of 15 and the same complexity budget. It cannot reach users-query.

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet,
};
use std::sync::Arc;

use async_graphql::{MergedObject, Schema, SchemaBuilder};

use crate::client::QueryClient;
use crate::erase::EraseMutation;
use crate::monitors::{MonitorMutation, MonitorQuery, MonitorsClient};
use crate::query::QueryRoot;
use crate::subscriptions::{Hub, SubscriptionRoot};

/// The `Query` root: the users page's reads and the monitors'.
#[derive(MergedObject)]
#[graphql(name = "Query")]
pub(crate) struct Query(QueryRoot, MonitorQuery);

// The `Mutation` root: the monitors' and erasing a user.
#[derive(MergedObject)]
#[graphql(name = "Mutation")]
pub(crate) struct Mutation(MonitorMutation, EraseMutation);

pub(crate) type GatewaySchema = Schema<Query, Mutation, SubscriptionRoot>;

pub(crate) const MAX_DEPTH: usize = 10;
pub(crate) const MAX_INTROSPECTION_DEPTH: usize = 15;
pub(crate) const MAX_COMPLEXITY: usize = 1_000;
/// Nesting of selection sets and input values the parser accepts, above the introspection
/// depth so that limit reports first; it guards the recursive validators' stack.
pub(crate) const MAX_RECURSIVE_DEPTH: usize = 32;
/// Fragment spreads followed when classifying an operation; deeper nesting is treated as data.
const MAX_FRAGMENT_NESTING: usize = 16;

fn builder() -> SchemaBuilder<Query, Mutation, SubscriptionRoot> {
    Schema::build(
        Query(QueryRoot, MonitorQuery),
        Mutation(MonitorMutation, EraseMutation),
        SubscriptionRoot,
    )
}

/// The SDL the gateway serves.
pub fn schema_sdl() -> String {
    builder().finish().sdl()
}

pub(crate) fn data_schema(client: QueryClient, hub: Arc<Hub>) -> GatewaySchema {
    builder()
        .data(MonitorsClient::new(&client))
        .data(client)
        .data(hub)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .limit_recursive_depth(MAX_RECURSIVE_DEPTH)
        .finish()
}

pub(crate) fn introspection_schema() -> GatewaySchema {
    builder()
        .introspection_only()
        .limit_depth(MAX_INTROSPECTION_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .limit_recursive_depth(MAX_RECURSIVE_DEPTH)
        .finish()
}

/// Whether the operation the request runs is a query that selects only `__schema`,
/// `__type` and `__typename`. Anything unusual (a parse error, an unknown operation or
/// fragment) answers false, so the data schema reports it under the strict limits.
pub(crate) fn is_introspection_only(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
) -> bool {
    let operation = match (&document.operations, operation_name) {
        (DocumentOperations::Single(operation), _) => operation,
        (DocumentOperations::Multiple(operations), Some(name)) => match operations.get(name) {
            Some(operation) => operation,
            None => return false,
        },
        // A document whose only operation is named parses as `Multiple`.
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
            match operations.values().next() {
                Some(operation) => operation,
                None => return false,
            }
        }
        (DocumentOperations::Multiple(_), None) => return false,
    };
    operation.node.ty == OperationType::Query
        && selects_only_introspection(document, &operation.node.selection_set.node, 0)
}

/// Most fields (and fragment spreads) one operation may select, fragments expanded. The
/// complexity budget does not count `__typename`, so without this a flood of aliased
/// `__typename` would be executed and answered field by field.
pub(crate) const MAX_SELECTIONS: usize = 2_000;

/// Fields and fragment spreads the operation selects, fragments expanded; counting stops
/// once past `MAX_SELECTIONS`, so the work is bounded whatever the document.
pub(crate) fn selection_count(document: &ExecutableDocument) -> usize {
    let mut count = 0;
    let operations: Vec<&SelectionSet> = match &document.operations {
        DocumentOperations::Single(operation) => vec![&operation.node.selection_set.node],
        DocumentOperations::Multiple(operations) => operations
            .values()
            .map(|operation| &operation.node.selection_set.node)
            .collect(),
    };
    for selection_set in operations {
        count_selections(document, selection_set, 0, &mut count);
    }
    count
}

fn count_selections(
    document: &ExecutableDocument,
    selection_set: &SelectionSet,
    nesting: usize,
    count: &mut usize,
) {
    for item in &selection_set.items {
        if *count > MAX_SELECTIONS {
            return;
        }
        *count += 1;
        match &item.node {
            Selection::Field(field) => {
                count_selections(document, &field.node.selection_set.node, nesting, count);
            }
            Selection::InlineFragment(fragment) => {
                count_selections(document, &fragment.node.selection_set.node, nesting, count);
            }
            Selection::FragmentSpread(spread) => {
                if nesting < MAX_FRAGMENT_NESTING
                    && let Some(fragment) = document.fragments.get(&spread.node.fragment_name.node)
                {
                    count_selections(
                        document,
                        &fragment.node.selection_set.node,
                        nesting + 1,
                        count,
                    );
                }
            }
        }
    }
}

fn selects_only_introspection(
    document: &ExecutableDocument,
    selection_set: &SelectionSet,
    nesting: usize,
) -> bool {
    if nesting > MAX_FRAGMENT_NESTING {
        return false;
    }
    selection_set.items.iter().all(|item| match &item.node {
        Selection::Field(field) => field.node.name.node.starts_with("__"),
        Selection::InlineFragment(fragment) => {
            selects_only_introspection(document, &fragment.node.selection_set.node, nesting + 1)
        }
        Selection::FragmentSpread(spread) => document
            .fragments
            .get(&spread.node.fragment_name.node)
            .is_some_and(|fragment| {
                selects_only_introspection(document, &fragment.node.selection_set.node, nesting + 1)
            }),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use async_graphql::extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextValidation,
    };
    use async_graphql::{ServerError, ValidationResult};

    use super::*;
    use crate::testing::{
        GRAPHIQL_INTROSPECTION_QUERY, USER_PAGE_QUERY, USERS_PAGE_QUERY, user_page_variables,
        users_page_variables,
    };

    fn classify(query: &str, operation_name: Option<&str>) -> bool {
        match async_graphql::parser::parse_query(query) {
            Ok(document) => is_introspection_only(&document, operation_name),
            Err(error) => panic!("{error}"),
        }
    }

    #[test]
    fn selections_are_counted_with_fragments_expanded() {
        let count = |query: &str| match async_graphql::parser::parse_query(query) {
            Ok(document) => selection_count(&document),
            Err(error) => panic!("{error}"),
        };
        assert_eq!(count("{ a b { c } }"), 3);
        assert_eq!(count("{ ...F ...F } fragment F on Query { a b }"), 6);
        let real = [
            GRAPHIQL_INTROSPECTION_QUERY,
            USERS_PAGE_QUERY,
            USER_PAGE_QUERY,
        ];
        for query in real {
            assert!(count(query) * 2 < MAX_SELECTIONS, "{}", count(query));
        }
        let flood: String = (0..5_000).map(|i| format!("t{i}: __typename ")).collect();
        assert!(count(&format!("{{ {flood} }}")) > MAX_SELECTIONS);
        // Fragments spreading each other twice per level: counting stops at the limit.
        let mut chain = String::from("{ ...F0 } ");
        for level in 0..MAX_FRAGMENT_NESTING {
            chain.push_str(&format!(
                "fragment F{level} on Query {{ ...F{next} ...F{next} }} ",
                next = level + 1
            ));
        }
        chain.push_str(&format!(
            "fragment F{MAX_FRAGMENT_NESTING} on Query {{ __typename }}"
        ));
        assert!(count(&chain) > MAX_SELECTIONS);
    }

    #[test]
    fn only_pure_introspection_queries_are_introspection() {
        assert!(classify(GRAPHIQL_INTROSPECTION_QUERY, None));
        assert!(classify("{ __typename }", None));
        assert!(classify(
            "{ __type(name: \"UserRow\") { fields { name } } }",
            None
        ));
        assert!(classify(
            "{ ...F } fragment F on Query { __schema { types { name } } }",
            None
        ));
        assert!(!classify(
            "{ __typename userDetail(userId: \"u\") { userId } }",
            None
        ));
        assert!(!classify(
            "{ ... on Query { users(range: {from: \"a\", to: \"b\"}) { totalCount } } }",
            None
        ));
        assert!(!classify("{ ...Missing }", None));
        assert!(!classify(
            "query A { __typename } query B { breakdowns(userId: \"u\") { tools { tool } } }",
            None
        ));
        assert!(classify(
            "query A { __typename } query B { breakdowns(userId: \"u\") { tools { tool } } }",
            Some("A")
        ));
        assert!(!classify(
            "query A { __typename } query B { breakdowns(userId: \"u\") { tools { tool } } }",
            Some("B")
        ));
    }

    /// Records what validation computed, to check the budget against real pages.
    #[derive(Clone, Default)]
    struct Measure(Arc<Mutex<Option<(usize, usize)>>>);

    impl ExtensionFactory for Measure {
        fn create(&self) -> Arc<dyn Extension> {
            Arc::new(self.clone())
        }
    }

    #[async_graphql::async_trait::async_trait]
    impl Extension for Measure {
        async fn validation(
            &self,
            ctx: &ExtensionContext<'_>,
            next: NextValidation<'_>,
        ) -> Result<ValidationResult, Vec<ServerError>> {
            let result = next.run(ctx).await?;
            if let Ok(mut slot) = self.0.lock() {
                *slot = Some((result.complexity, result.depth));
            }
            Ok(result)
        }
    }

    async fn measure(query: &str, variables: serde_json::Value) -> (usize, usize) {
        let measure = Measure::default();
        let schema = builder().extension(measure.clone()).finish();
        let request = async_graphql::Request::new(query)
            .variables(async_graphql::Variables::from_json(variables));
        // No client in this schema: execution fails after validation, which is all we need.
        let _ = schema.execute(request).await;
        let measured = measure.0.lock().ok().and_then(|slot| *slot);
        measured.unwrap_or_else(|| panic!("validation did not run for {query}"))
    }

    #[tokio::test]
    async fn the_real_pages_fit_the_budget_comfortably() {
        let (complexity, depth) = measure(USERS_PAGE_QUERY, users_page_variables()).await;
        println!("users page: complexity {complexity}, depth {depth}");
        assert!(
            complexity * 3 <= MAX_COMPLEXITY,
            "users page complexity {complexity}"
        );
        assert!(depth <= MAX_DEPTH);

        let (complexity, depth) = measure(USER_PAGE_QUERY, user_page_variables()).await;
        println!("user page: complexity {complexity}, depth {depth}");
        assert!(
            complexity * 2 <= MAX_COMPLEXITY,
            "user page complexity {complexity}"
        );
        assert!(depth <= MAX_DEPTH);

        let (complexity, depth) =
            measure(GRAPHIQL_INTROSPECTION_QUERY, serde_json::json!({})).await;
        println!("graphiql introspection: complexity {complexity}, depth {depth}");
        assert!(complexity * 2 <= MAX_COMPLEXITY);
        assert!(depth <= MAX_INTROSPECTION_DEPTH);
        assert!(depth > MAX_DEPTH, "the twin schema would not be needed");
    }
}
