// "Copy" buttons next to transaction IDs and generated passwords.
import { announce, text } from "./texts.js";

export function enhanceCopyButtons() {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.hidden = false;
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copy);
      try {
        await navigator.clipboard.writeText(source.textContent.trim());
        announce(text("copied"));
      } catch {
        announce(text("copy_failed"));
        const range = document.createRange();
        range.selectNodeContents(source);
        getSelection().removeAllRanges();
        getSelection().addRange(range);
      }
    });
  }
}
