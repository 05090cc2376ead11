// The job page's task graph: a layered (Sugiyama-style) layout, left to right (dagdraw.js draws
// it as SVG). Layers are longest paths from the roots; edges longer than one layer get a dummy
// node per layer they cross, so they are ordered and placed like nodes and run in lanes between
// them instead of cutting through boxes. A few barycenter sweeps, each followed by adjacent swaps,
// order each layer (the order with the fewest crossings is kept), then an isotonic regression per
// layer places nodes as close to their neighbours as the spacing allows, so chains come out
// straight.

import { ellipsize, round1 } from "./svg.js";

/** Above this many tasks the page shows a list instead: a graph that size cannot be read. */
export const LIST_THRESHOLD = 1000;

const CHAR_W = 7.25; // advance of widgets.css's 12px monospace node font, so no DOM measuring
const MAX_CHARS = 32; // longer ids are cut with an ellipsis; the <title> has the whole id
export const PAD_X = 14; // left pad includes the 5px status stripe
const NODE_H = 30;
const COND_NODE_H = 44; // room for the condition line under the id
const MIN_W = 56;
const LAYER_GAP = 64; // horizontal room for the curves between two columns
const NODE_GAP = 14;
const DUMMY_GAP = 8; // lanes of long edges may run closer together than boxes
const DUMMY_WEIGHT = 4; // long edges pull harder toward straightness than a box toward its neighbours
const MARGIN = 16;
const ORDER_SWEEPS = 8;
const TRANSPOSE_PASSES = 4;
const PLACE_ROUNDS = 8;
export const DEFAULT_CONDITION = "all_success";

/**
 * Lay out tasks [{id, name?, depends_on: [ids], condition?}] as a left-to-right layered graph.
 * Returns {nodes: [{id, x, y, w, h, layer, label, condition}], edges: [{from, to, d}], width,
 * height}: x, y is a node's top-left corner, d an SVG path from the dependency to the dependant.
 * Unknown or self dependencies are ignored; a cycle (the scheduler refuses them) still lays out.
 */
export function layoutDag(tasks) {
  const index = new Map(tasks.map((t, i) => [t.id, i]));
  const preds = tasks.map((t) => {
    const ids = (t.depends_on || []).filter((id) => index.has(id) && id !== t.id);
    return [...new Set(ids.map((id) => index.get(id)))];
  });
  const layerOf = longestPathLayers(preds);
  const graph = buildLayeredGraph(tasks, preds, layerOf);
  orderLayers(graph);
  const columns = placeColumns(graph);
  placeRows(graph);
  return output(graph, columns);
}

// Layer = length of the longest path from a root (Kahn's order). Nodes left over by a cycle get
// one past their placed predecessors so the drawing degrades instead of failing.
function longestPathLayers(preds) {
  const n = preds.length;
  const succs = Array.from({ length: n }, () => []);
  const missing = preds.map((ps) => ps.length);
  preds.forEach((ps, v) => ps.forEach((u) => succs[u].push(v)));
  const layer = new Array(n).fill(-1);
  const queue = [];
  for (let v = 0; v < n; v++) if (missing[v] === 0) queue.push(v);
  for (let head = 0; head < queue.length; head++) {
    const u = queue[head];
    layer[u] = Math.max(0, ...preds[u].map((p) => layer[p] + 1));
    for (const v of succs[u]) if (--missing[v] === 0) queue.push(v);
  }
  for (let v = 0; v < n; v++) {
    if (layer[v] < 0) layer[v] = 1 + Math.max(0, ...preds[v].map((p) => layer[p]));
  }
  return layer;
}

function nodeBox(task) {
  const label = ellipsize(String(task.id), MAX_CHARS);
  const condition = task.condition && task.condition !== DEFAULT_CONDITION ? task.condition : null;
  const chars = Math.max(label.length, condition ? condition.length + 2 : 0);
  const w = Math.max(MIN_W, Math.ceil(chars * CHAR_W) + PAD_X + 10);
  return { label, condition, w, h: condition ? COND_NODE_H : NODE_H };
}

// Vertices are the tasks (same index) followed by dummies; up/down hold neighbours in the
// adjacent layers; chains keep, per dependency, the vertices its path runs through.
function buildLayeredGraph(tasks, preds, layerOf) {
  const verts = tasks.map((t, i) => ({ ...nodeBox(t), id: t.id, layer: layerOf[i], dummy: false }));
  const up = verts.map(() => []);
  const down = verts.map(() => []);
  const chains = [];
  const link = (a, b) => {
    down[a].push(b);
    up[b].push(a);
  };
  preds.forEach((ps, v) => {
    for (const u of ps) {
      const chain = [u];
      if (verts[u].layer < verts[v].layer) {
        let prev = u;
        for (let l = verts[u].layer + 1; l < verts[v].layer; l++) {
          const d = verts.length;
          verts.push({ id: null, layer: l, dummy: true, w: 0, h: 0 });
          up.push([]);
          down.push([]);
          link(prev, d);
          chain.push(d);
          prev = d;
        }
        link(prev, v);
      }
      chain.push(v);
      chains.push(chain);
    }
  });
  const layerCount = tasks.length ? Math.max(...layerOf) + 1 : 0;
  return { verts, up, down, chains, layers: initialOrder(verts, down, layerCount) };
}

// Depth-first visiting order from the roots: siblings start next to each other.
function initialOrder(verts, down, layerCount) {
  const layers = Array.from({ length: layerCount }, () => []);
  const seen = new Uint8Array(verts.length);
  const visit = (start) => {
    const stack = [start];
    while (stack.length) {
      const v = stack.pop();
      if (seen[v]) continue;
      seen[v] = 1;
      layers[verts[v].layer].push(v);
      for (let i = down[v].length - 1; i >= 0; i--) stack.push(down[v][i]);
    }
  };
  verts.forEach((x, v) => x.layer === 0 && visit(v));
  verts.forEach((_, v) => visit(v)); // cycle leftovers
  return layers;
}

function indexPositions(graph) {
  graph.pos = new Array(graph.verts.length);
  for (const layer of graph.layers) layer.forEach((v, i) => (graph.pos[v] = i));
}

// Alternate downward sweeps (order by the mean position of the neighbours above) and upward
// ones, each followed by adjacent swaps that the means miss; keep the order with the fewest
// crossings, and stop once a down-and-up pair of sweeps found nothing better.
function orderLayers(graph) {
  indexPositions(graph);
  let best = graph.layers.map((l) => l.slice());
  let bestCrossings = countCrossings(graph);
  let stale = 0;
  for (let sweep = 0; sweep < ORDER_SWEEPS && bestCrossings > 0 && stale < 2; sweep++) {
    const downward = sweep % 2 === 0;
    const last = graph.layers.length - 1;
    for (let k = 1; k <= last; k++) {
      const l = downward ? k : last - k;
      reorder(graph, graph.layers[l], downward ? graph.up : graph.down);
    }
    transpose(graph);
    const crossings = countCrossings(graph);
    stale++;
    if (crossings < bestCrossings) {
      bestCrossings = crossings;
      best = graph.layers.map((layer) => layer.slice());
      stale = 0;
    }
  }
  graph.layers = best;
  indexPositions(graph);
}

function reorder(graph, layer, neighbours) {
  const { pos } = graph;
  const keyed = layer.map((v, i) => {
    const ns = neighbours[v];
    // A vertex without neighbours on that side keeps its place rather than jumping to 0.
    const key = ns.length ? ns.reduce((sum, u) => sum + pos[u], 0) / ns.length : i;
    return { v, key, i };
  });
  keyed.sort((a, b) => a.key - b.key || a.i - b.i);
  keyed.forEach(({ v }, i) => {
    layer[i] = v;
    pos[v] = i;
  });
}

// Swap neighbours in a layer while that removes crossings with both adjacent layers (dot's
// "transpose"); a few passes at most, since each swap strictly lowers the count.
function transpose(graph) {
  const { layers, up, down, pos } = graph;
  const tally = { kept: 0, swapped: 0 };
  for (let pass = 0; pass < TRANSPOSE_PASSES; pass++) {
    let improved = false;
    for (const layer of layers) {
      for (let i = 0; i + 1 < layer.length; i++) {
        const a = layer[i];
        const b = layer[i + 1];
        tally.kept = tally.swapped = 0;
        pairCrossings(pos, up[a], up[b], tally);
        pairCrossings(pos, down[a], down[b], tally);
        if (tally.swapped < tally.kept) {
          [layer[i], layer[i + 1], pos[a], pos[b]] = [b, a, i + 1, i];
          improved = true;
        }
      }
    }
    if (!improved) return;
  }
}

// Adds to tally the crossings between the edges of the left vertex and those of the right one
// as they are (kept) and if the two swapped places (swapped); a shared neighbour crosses neither.
function pairCrossings(pos, left, right, tally) {
  for (const u of left) {
    for (const v of right) {
      if (pos[u] > pos[v]) tally.kept++;
      else if (pos[u] < pos[v]) tally.swapped++;
    }
  }
}

// Crossings between each pair of adjacent layers = inversions of the lower ends once the edges
// are sorted by (upper end, lower end), counted with a Fenwick tree: O(E log V). Edges are
// packed as numbers in a typed array so the sort needs no comparator and makes no garbage.
function countCrossings(graph) {
  const { layers, down, pos } = graph;
  let total = 0;
  for (let l = 0; l + 1 < layers.length; l++) {
    const size = layers[l + 1].length;
    let count = 0;
    for (const u of layers[l]) count += down[u].length;
    const keys = new Float64Array(count);
    let k = 0;
    for (const u of layers[l]) for (const v of down[u]) keys[k++] = pos[u] * size + pos[v];
    keys.sort();
    const tree = new Int32Array(size + 1);
    for (let i = 0; i < count; i++) {
      const end = keys[i] % size;
      let greater = i; // edges seen so far minus those ending at or before this one's end
      for (let j = end + 1; j > 0; j -= j & -j) greater -= tree[j];
      total += greater;
      for (let j = end + 1; j <= size; j += j & -j) tree[j]++;
    }
  }
  return total;
}

// Columns as wide as their widest box; boxes centred in their column.
function placeColumns(graph) {
  const columns = [];
  let x = MARGIN;
  for (const layer of graph.layers) {
    const w = Math.max(0, ...layer.map((v) => graph.verts[v].w));
    columns.push({ x, w });
    x += w + LAYER_GAP;
  }
  for (const vert of graph.verts) {
    const col = columns[vert.layer];
    vert.x = col.x + (col.w - vert.w) / 2;
  }
  return columns;
}

// Each round pulls every vertex of a layer toward the mean centre of its neighbours on one side
// (the last round: both), then places the layer as close to those wishes as the spacing allows.
function placeRows(graph) {
  const { verts, layers, up, down } = graph;
  for (const layer of layers) {
    let y = 0;
    layer.forEach((v, i) => {
      if (i > 0) y += separation(verts[layer[i - 1]], verts[v]);
      verts[v].cy = y;
    });
  }
  for (let round = 0; round < PLACE_ROUNDS; round++) {
    const final = round === PLACE_ROUNDS - 1;
    const downward = round % 2 === 0;
    const last = layers.length - 1;
    for (let k = 0; k <= last; k++) {
      const layer = layers[downward ? k : last - k];
      const wishes = layer.map((v) => {
        const ns = final ? up[v].concat(down[v]) : downward ? up[v] : down[v];
        return ns.length ? ns.reduce((s, u) => s + verts[u].cy, 0) / ns.length : verts[v].cy;
      });
      placeLayer(layer.map((v) => verts[v]), wishes);
    }
  }
  let top = Infinity; // a loop, not Math.min(...): thousands of dummies would overflow the stack
  for (const vert of verts) top = Math.min(top, vert.cy - vert.h / 2);
  for (const vert of verts) vert.cy += MARGIN - top;
}

function separation(a, b) {
  return (a.h + b.h) / 2 + (a.dummy || b.dummy ? DUMMY_GAP : NODE_GAP);
}

// Weighted isotonic regression (pool adjacent violators): minimise the weighted squared
// distance to the wishes while keeping the layer's order and spacing. With c the cumulative
// minimum spacing, z = y - c must be non-decreasing; PAVA solves that exactly in O(n).
function placeLayer(layer, wishes) {
  const offsets = [];
  let c = 0;
  layer.forEach((vert, i) => {
    if (i > 0) c += separation(layer[i - 1], vert);
    offsets.push(c);
  });
  const blocks = [];
  layer.forEach((vert, i) => {
    const w = vert.dummy ? DUMMY_WEIGHT : 1;
    blocks.push({ sum: w * (wishes[i] - offsets[i]), weight: w, count: 1 });
    while (blocks.length > 1) {
      const b = blocks[blocks.length - 1];
      const a = blocks[blocks.length - 2];
      if (a.sum / a.weight < b.sum / b.weight) break;
      blocks.pop();
      a.sum += b.sum;
      a.weight += b.weight;
      a.count += b.count;
    }
  });
  let i = 0;
  for (const block of blocks) {
    const z = block.sum / block.weight;
    for (let k = 0; k < block.count; k++, i++) layer[i].cy = z + offsets[i];
  }
}

function output(graph, columns) {
  const { verts, chains } = graph;
  const real = verts.filter((x) => !x.dummy);
  const nodes = real.map(({ id, x, cy, w, h, layer, label, condition }) => {
    return { id, x, y: cy - h / 2, w, h, layer, label, condition };
  });
  const edges = chains.map((chain) => ({
    from: verts[chain[0]].id,
    to: verts[chain[chain.length - 1]].id,
    d: edgePath(chain.map((v) => verts[v]), columns),
  }));
  const width = Math.max(0, ...real.map((x) => x.x + x.w)) + MARGIN;
  const height = Math.max(0, ...real.map((x) => x.cy + x.h / 2)) + MARGIN;
  return { nodes, edges, width: Math.ceil(width), height: Math.ceil(height) };
}

// From the right side of the dependency to the left side of the dependant; through a dummy the
// edge runs straight across its column, between columns it is a cubic with level tangents.
function edgePath(chain, columns) {
  const first = chain[0];
  const lastVert = chain[chain.length - 1];
  const points = [[first.x + first.w, first.cy]];
  for (const vert of chain.slice(1, -1)) {
    const col = columns[vert.layer];
    points.push([col.x, vert.cy], [col.x + col.w, vert.cy]);
  }
  points.push([lastVert.x, lastVert.cy]);
  const r = round1;
  let d = `M${r(points[0][0])},${r(points[0][1])}`;
  for (let i = 1; i < points.length; i++) {
    const [px, py] = points[i - 1];
    const [qx, qy] = points[i];
    if (i % 2 === 0) {
      d += `L${r(qx)},${r(qy)}`; // across a dummy's column
    } else {
      const k = Math.max(Math.abs(qx - px) / 2, 12); // a back edge (cycle) still bends visibly
      d += `C${r(px + k)},${r(py)} ${r(qx - k)},${r(qy)} ${r(qx)},${r(qy)}`;
    }
  }
  return d;
}
