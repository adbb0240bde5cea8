// The page's entry: the key prompt, client-side routing with the History API (`/` is the
// users page, `/users/<id>` a user's detail; the gateway answers index.html at both), and
// the errors every view shares.

import { forgetKey, getKey, setKey } from "./api.js";
import { h, replace } from "./dom.js";
import { mountUserPage } from "./user.js";
import { mountUsersPage } from "./users.js";

const app = document.getElementById("app");
const changeKey = document.getElementById("change-key");
let usersPage = null;

function keyPrompt(message) {
  usersPage = null;
  const input = h("input", {
    type: "password", name: "api-key", autocomplete: "off", required: true,
    placeholder: "ul_…", "aria-label": "API key", "data-testid": "key-input",
  });
  replace(app, h("section", { class: "panel key-prompt", "data-testid": "key-prompt" },
    h("h1", {}, "Enter your API key"),
    message ? h("p", { class: "error", role: "alert" }, message) : null,
    h("p", {}, "userlens all-in-one prints the key on start (", h("code", {}, "userlens API key (project default): ul_…"),
      ") and keeps it in ", h("code", {}, "./data/api-key"), ". It is kept in this browser's storage and sent as an Authorization header, never in a URL."),
    h("form", {
      onsubmit: (event) => {
        event.preventDefault();
        if (!input.value.trim()) return;
        setKey(input.value);
        route();
      },
    }, input, h("button", { type: "submit" }, "Save key"))));
  input.focus();
}

// Errors every view handles the same way; answers true when handled.
function failed(error) {
  if (error.code === "UNAUTHENTICATED") {
    forgetKey();
    keyPrompt(`The gateway refused the key (${error.code}): ${error.message}. Enter a valid key.`);
    return true;
  }
  return false;
}

function navigate(mutate, { replace: replaceEntry = false } = {}) {
  const url = new URL(location.href);
  mutate(url.searchParams);
  if (url.href === location.href) return;
  history[replaceEntry ? "replaceState" : "pushState"](null, "", url);
  route();
}

function route() {
  changeKey.hidden = !getKey();
  if (!getKey()) {
    keyPrompt(null);
    return;
  }
  const path = location.pathname;
  const user = path.match(/^\/users\/([^/]+)\/?$/);
  if (user) {
    usersPage = null;
    const userId = decodeURIComponent(user[1]);
    document.title = `${userId} · userlens`;
    mountUserPage(app, userId, { failed });
    return;
  }
  document.title = "Users · userlens";
  if (!usersPage) usersPage = mountUsersPage(app, { navigate, failed });
  usersPage.update(new URLSearchParams(location.search));
}

// Same-origin links marked data-link change the view without a reload.
document.addEventListener("click", (event) => {
  const link = event.target.closest?.("a[data-link]");
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  event.preventDefault();
  const target = new URL(link.href, location.href);
  // The users page keeps its range, search and sort when coming back from a user.
  if (target.pathname === "/" && sessionStorage.getItem("userlens.usersSearch") !== null) {
    target.search = sessionStorage.getItem("userlens.usersSearch");
  }
  if (location.pathname === "/") sessionStorage.setItem("userlens.usersSearch", location.search);
  history.pushState(null, "", target);
  window.scrollTo(0, 0);
  route();
});

changeKey.addEventListener("click", () => {
  forgetKey();
  route();
});

window.addEventListener("popstate", route);
route();
