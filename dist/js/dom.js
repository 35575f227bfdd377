// Building DOM without HTML strings: text always goes in as text, never as markup, which is
// what lets the Content-Security-Policy require Trusted Types.

/** h("a", {href: "/", class: "x", onClick: fn}, "text", child) → an element. */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === false || value === null || value === undefined) continue;
    if (key === "class") element.className = value;
    else if (/^on[A-Z]/.test(key)) element.addEventListener(key.slice(2).toLowerCase(), value);
    else element.setAttribute(key, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

/** Append children (nodes, strings, numbers, nested arrays); null and false are skipped. */
export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : String(child));
  }
  return parent;
}

/** Replace everything inside *parent* with *children*. */
export function replaceChildren(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}
