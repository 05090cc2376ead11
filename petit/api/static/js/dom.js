// Building DOM nodes without HTML strings: every value goes in as a text node or an attribute,
// so a job name like "<img onerror=...>" is shown, never parsed. The one exception is href,
// which only takes paths of this site (a "javascript:" URL from a job file can never be a link).

const EVENT_ATTR = /^on/i;

/** h("a", {href: "/jobs/x", class: "name", "data-id": "x", onclick: fn}, "text", child) */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (typeof value === "function") {
      node.addEventListener(name.replace(EVENT_ATTR, ""), value);
    } else if (EVENT_ATTR.test(name)) {
      throw new Error(`h(): ${name} must be a function`);
    } else if (name === "href") {
      node.setAttribute("href", internalPath(value));
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replace what a node holds. */
export function fill(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

/** A path of this site, with the parts that came from data percent-encoded. */
export function path(...parts) {
  return "/" + parts.map((p) => encodeURIComponent(p)).join("/");
}

function internalPath(value) {
  const text = String(value);
  // "/x" but not "//host": a protocol-relative URL would leave the site
  if (text.startsWith("/") && !text.startsWith("//")) return text;
  throw new Error(`h(): href must be a path of this site, got ${JSON.stringify(text.slice(0, 40))}`);
}

/** A button that stays in the tab order, with an accessible name of its own. */
export function button(label, onclick, attrs = {}) {
  return h("button", { type: "button", onclick, ...attrs }, label);
}
