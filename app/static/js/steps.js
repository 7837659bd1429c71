// The step indicator stays on one line: where the labels of all steps do
// not fit (a narrow window, a language with long words), only the current
// step's label shows, as on a phone; the others stay readable to screen
// readers (style.css, .steps-compact).
export function fitSteps(list) {
  if (!list) return;
  const fit = () => {
    list.classList.remove("steps-compact");
    if (list.scrollWidth > list.clientWidth) list.classList.add("steps-compact");
  };
  fit();
  window.addEventListener("resize", fit);
}
