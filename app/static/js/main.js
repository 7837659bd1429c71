// Progressive enhancement: every page works without this; with it, the
// files step uploads resumably, passwords get live feedback, IDs can be
// copied, and a no-password link's key is posted from the page. Each part
// looks for its own markup and does nothing without it.
import { enhanceCopyButtons } from "./copy.js";
import { focusFirstError } from "./errors.js";
import { enhanceLinkKey } from "./link.js";
import { enhancePassword } from "./password.js";
import { enhancePrint } from "./print.js";
import { enhanceUploads } from "./upload.js";

document.documentElement.classList.add("js");
focusFirstError();
enhanceCopyButtons();
enhanceLinkKey(document.querySelector("[data-unlock-form]"));
enhancePassword(document.querySelector("[data-strength-url]"));
enhancePrint();
enhanceUploads(document.querySelector("[data-upload-url]"));
