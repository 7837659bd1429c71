// Progressive enhancement: every page works without this; with it, the
// files step uploads resumably, passwords get live feedback, IDs can be
// copied, a no-password link's key is posted from the page, the step
// indicator stays on one line, the session warns before it ends and a
// typed message survives its end, and a page opened at another address
// than the portal's says so. Each part looks for its own markup and does
// nothing without it.
import { enhanceCopyButtons } from "./copy.js";
import { focusFirstError } from "./errors.js";
import { keepTyped } from "./keep.js";
import { enhanceLinkKey } from "./link.js";
import { checkAddress } from "./origin.js";
import { enhancePassword } from "./password.js";
import { enhancePrint } from "./print.js";
import { watchSession } from "./session.js";
import { fitSteps } from "./steps.js";
import { enhanceUploads } from "./upload.js";

document.documentElement.classList.add("js");
checkAddress(document.body);
fitSteps(document.querySelector(".steps"));
focusFirstError();
enhanceCopyButtons();
enhanceLinkKey(document.querySelector("[data-unlock-form]"));
enhancePassword(document.querySelector("[data-strength-url]"));
enhancePrint();
enhanceUploads(document.querySelector("[data-upload-url]"));
keepTyped(document.body);
watchSession(document.body);
