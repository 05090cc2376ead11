// Draws a layout of dag.js as SVG, and recolours it by a run's task states without a new layout.

import { DEFAULT_CONDITION, PAD_X } from "./dag.js";
import { clear, svgEl } from "./svg.js";

/**
 * Fill svg (svg#dag) with layout: one g.node[data-task-id][data-status="none"] per task (id as
 * text, non-default condition shown under it) and one path.edge[data-from][data-to] per
 * dependency with an arrowhead. The svg gets the layout's size, so its container scrolls to pan.
 */
export function drawDag(svg, layout, tasksById = {}) {
  clear(svg);
  svg.classList.add("dag");
  svg.setAttribute("viewBox", `0 0 ${layout.width} ${layout.height}`);
  svg.setAttribute("width", layout.width);
  svg.setAttribute("height", layout.height);
  const markerId = `${svg.id || "dag"}-arrow`;
  const marker = svgEl("marker", { id: markerId, viewBox: "0 0 10 10", refX: 9, refY: 5,
    markerWidth: 7, markerHeight: 7, markerUnits: "userSpaceOnUse", orient: "auto" },
  svgEl("path", { d: "M0,1 L9,5 L0,9 Z", class: "dag-arrowhead" }));
  const conditionById = new Map(layout.nodes.map((n) => [n.id, n.condition]));
  const edges = svgEl("g", { class: "edges" });
  for (const edge of layout.edges) {
    const condition = conditionById.get(edge.to) || DEFAULT_CONDITION;
    edges.append(svgEl("path", { class: "edge", d: edge.d, "data-from": edge.from, "data-to": edge.to,
      "data-condition": condition, "marker-end": `url(#${markerId})` }));
  }
  const nodes = svgEl("g", { class: "nodes" });
  for (const node of layout.nodes) {
    const name = (lookup(tasksById, node.id) || {}).name;
    const who = name && name !== node.id ? `${node.id} (${name})` : node.id;
    const mid = node.condition ? 18 : node.h / 2;
    const g = svgEl(
      "g",
      { class: "node", transform: `translate(${node.x},${node.y})`, "data-task-id": node.id,
        "data-status": "none", "data-condition": node.condition || DEFAULT_CONDITION },
      svgEl("title", {}, `${who} · none`),
      svgEl("rect", { class: "node-box", width: node.w, height: node.h, rx: 6 }),
      svgEl("rect", { class: "node-mark", width: 5, height: node.h, rx: 2 }),
      svgEl("text", { class: "node-label", x: PAD_X, y: mid, "dominant-baseline": "central" },
        node.label),
    );
    if (node.condition) {
      g.append(svgEl("text", { class: "node-condition", x: PAD_X, y: node.h - 11,
        "dominant-baseline": "central" }, `⤷ ${node.condition}`));
    }
    nodes.append(g);
  }
  svg.append(svgEl("defs", {}, marker), edges, nodes);
}

/** Set each node's data-status (and its title) from statusById (a Map or an object); absent = "none". */
export function colourDag(svg, statusById) {
  for (const g of svg.querySelectorAll("g.node")) {
    const id = g.getAttribute("data-task-id");
    const status = lookup(statusById, id) || "none";
    if (g.getAttribute("data-status") === status) continue;
    g.setAttribute("data-status", status);
    const title = g.querySelector("title");
    title.textContent = title.textContent.replace(/ · [^·]*$/, ` · ${status}`);
  }
}

function lookup(table, key) {
  return table instanceof Map ? table.get(key) : table && Object.hasOwn(table, key) ? table[key] : undefined;
}
