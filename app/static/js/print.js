// "Print or save as PDF" on a report: the browser's own print dialog,
// which print.css gives the page without navigation.
export function enhancePrint() {
  for (const button of document.querySelectorAll("button[data-print]")) {
    button.hidden = false;
    button.addEventListener("click", () => window.print());
  }
}
