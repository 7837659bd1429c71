// Progressive enhancement: every page works without this; with it, the
// files step uploads resumably, passwords get live feedback, and IDs can be
// copied. Each part looks for its own markup and does nothing without it.
import { enhanceCopyButtons } from "./copy.js";
import { focusFirstError } from "./errors.js";
import { enhancePassword } from "./password.js";
import { enhanceUploads } from "./upload.js";

document.documentElement.classList.add("js");
focusFirstError();
enhanceCopyButtons();
enhancePassword(document.querySelector("[data-strength-url]"));
enhanceUploads(document.querySelector("[data-upload-url]"));
