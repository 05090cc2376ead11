// Small DOM helpers shared by the dashboard's SVG widgets. Every string goes in through
// setAttribute or a text node, never parsed as markup: task ids and names are untrusted.

const SVG_NS = "http://www.w3.org/2000/svg";

/** Create an SVG element; attrs via setAttribute (null/undefined skipped), string children as text. */
export function svgEl(name, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) el.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    el.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return el;
}

/** Remove every child of node. */
export function clear(node) {
  node.replaceChildren();
}

/** The width an SVG widget should lay itself out to: its rendered width, or a fallback when hidden. */
export function widthOf(svg, fallback = 900) {
  return Math.round(svg.getBoundingClientRect().width) || fallback;
}

/** n rounded to a tenth: shorter path data and attributes, no visible difference. */
export function round1(n) {
  return Math.round(n * 10) / 10;
}

/** Cut a label to max characters with an ellipsis (the full text goes in a <title>). */
export function ellipsize(text, max) {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
