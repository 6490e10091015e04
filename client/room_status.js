// The room's status line: connecting, securing, connected, waiting to retry (a
// full room says so), or stopped, with the action each state offers; and the
// full-page explanation for a key the server refuses (4401).

import { markPresence } from "/presence.js";
import { roomFullText } from "/protocol.js";
import { h, newChatLink, replace, showProblem } from "/ui.js";

/** Show `status` (from RoomConnection) on `room`'s page. */
export function drawStatus(room, status) {
  room.status = status;
  clearInterval(room.countdown);
  room.statusLine.dataset.state = status.state;
  replace(room.statusAction);
  room.statusDetail.textContent = "";
  if (status.state !== "open") room.deliveries.disconnected(room.entries);
  switch (status.state) {
    case "connecting":
      room.statusText.textContent = "Connecting…";
      break;
    case "securing": // a new room on a busy server: the page works a moment first
      room.statusText.textContent = "Securing the room…";
      break;
    case "open":
      // Pending messages go out once the history is read (handleHistory).
      room.statusText.textContent = "Connected, end-to-end encrypted";
      break;
    case "waiting": {
      const full = status.code === 4409; // the room is full: it says so, and retries on its own
      room.statusText.textContent = status.text ? `Disconnected. ${status.text}` : "Disconnected.";
      if (full) room.statusText.textContent = roomFullText(room.participants.length);
      const tick = () => {
        const seconds = Math.max(0, Math.ceil((status.retryAt - Date.now()) / 1000));
        room.statusDetail.textContent = `Trying again in ${seconds} s.`;
      };
      tick();
      room.countdown = setInterval(tick, 1000);
      room.statusAction.append(actionButton(full ? "Try now" : "Reconnect now", () => room.connection.reconnectNow()));
      break;
    }
    case "stopped":
      if (status.code === 4401) {
        document.body.dataset.closeCode = "4401";
        showWrongKey(room);
        return;
      }
      room.statusText.textContent = status.text;
      if (status.fatal) {
        room.statusAction.append(actionButton("Forget this room", () => room.forget()));
        room.input.disabled = true;
        room.sendButton.disabled = true;
      } else {
        room.statusAction.append(actionButton("Reconnect", () => room.connection.reconnectNow({ manual: true })));
      }
      break;
  }
  document.body.dataset.connection = status.state;
  markPresence(room.people, room.participants.length, status.state === "open");
  if (status.code) document.body.dataset.closeCode = String(status.code);
}

/** The key does not open this room: a full-page explanation, as for a damaged link. */
function showWrongKey(room) {
  showProblem(
    "This link's key does not match this room",
    [
      "The server refused the key in this link for this room, so nothing here can be read or sent. The link may be mistyped or incomplete.",
      "Ask for the invite link again and open it exactly as you received it. Forget this room to remove the wrong key from this browser.",
    ],
    [h("button", { type: "button", class: "button", onclick: () => room.forget() }, "Forget this room"), newChatLink()],
  );
}

function actionButton(label, onclick) {
  return h("button", { type: "button", class: "link-button", onclick }, label);
}
