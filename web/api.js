// The page's only way to data: the public GraphQL API at /graphql, with the key the user
// entered, sent as `Authorization: Bearer <key>` like any other client. The key is kept in
// localStorage and never put in a URL. Query texts are the files of /assets/queries/, the
// same ones a test checks against schema.graphql.

const KEY_STORAGE = "userlens.apiKey";

export const getKey = () => localStorage.getItem(KEY_STORAGE);
export const setKey = (key) => localStorage.setItem(KEY_STORAGE, key.trim());
export const forgetKey = () => localStorage.removeItem(KEY_STORAGE);

/** A failed call: `code` is the GraphQL error code (UNAUTHENTICATED, BAD_USER_INPUT,
 * UNAVAILABLE, INTERNAL), or NETWORK when the gateway did not answer. */
export class ApiError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

const queryTexts = new Map();

function queryText(name) {
  if (!queryTexts.has(name)) {
    const text = fetch(`/assets/queries/${name}.graphql`).then((response) => {
      if (!response.ok) throw new ApiError("NETWORK", `query ${name} is not served (${response.status})`);
      return response.text();
    });
    text.catch(() => queryTexts.delete(name));
    queryTexts.set(name, text);
  }
  return queryTexts.get(name);
}

/** Runs the query of `web/queries/<name>.graphql` and answers its `data`; throws ApiError. */
export async function graphql(name, variables) {
  const key = getKey();
  if (!key) throw new ApiError("UNAUTHENTICATED", "no API key entered");
  const query = await queryText(name);
  let response;
  try {
    response = await fetch("/graphql", {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/graphql-response+json, application/json",
        authorization: `Bearer ${key}`,
      },
      body: JSON.stringify({ query, variables }),
    });
  } catch (error) {
    throw new ApiError("NETWORK", `the gateway did not answer: ${error.message}`);
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError("NETWORK", `the gateway answered HTTP ${response.status} without a GraphQL body`);
  }
  const error = body.errors?.[0];
  if (error) {
    throw new ApiError(error.extensions?.code ?? "INTERNAL", error.message ?? "unknown error");
  }
  return body.data;
}
