"""Episodes of communication: newsletters, support cases across the call centre and the
helpdesk, messages by SMS, WhatsApp, Messenger and web chat."""

from __future__ import annotations

from datetime import timedelta

from connectors.mapping import TRUTH_PROPERTY
from connectors.synthetic.timeline import StoryCore


class ServiceEpisodes(StoryCore):
    def newsletter(self) -> None:
        p = self.person
        campaign = self.rnd.choice(["winter-sale", "black-week", "new-in", "loyalty-news"])
        at = self.later(3600, 5 * 86400)
        message = self.uid("sg-msg")
        steps = ["delivered"] + (["open"] if self.rnd.random() < 0.5 else [])
        if "open" in steps and self.rnd.random() < 0.5:
            steps.append("click")
        if self.rnd.random() < 0.03:
            steps.append("unsubscribe")
        address = p.second_email if p.second_email and self.rnd.random() < 0.3 else p.email
        for step in steps:
            at += timedelta(minutes=self.rnd.randint(1, 600))
            item = {
                "email": address,
                "timestamp": int(at.timestamp()),
                "event": step,
                "sg_event_id": self.uid("sg-evt"),
                "sg_message_id": message,
                "campaign": campaign,
                TRUTH_PROPERTY: self.truth,
            }
            if step == "click":
                item["url"] = f"https://shop.example.de/{campaign}"
            if p.customer_id and self.rnd.random() < 0.5:
                item["customer_id"] = p.customer_id
            self.hook("email", item, at)

    def support_case(self) -> None:
        p = self.person
        ticket = f"T-{self.seed}-{p.pid}-{self.rnd.randint(100, 999)}"
        first, last = p.name_variant(self.rnd, self.corruption)
        conversation = self.uid("conv")
        at = self.later(3600, 10 * 86400)
        for n in range(self.rnd.randint(1, 3)):
            self.hook(
                "chat",
                {
                    "message_id": self.uid("chat"),
                    "conversation_id": conversation,
                    "sent_at": (at + timedelta(minutes=2 * n)).isoformat(),
                    "author": "visitor",
                    "ticket_id": ticket,
                    "visitor": {
                        "anonymous_id": self.rnd.choice(p.anonymous_ids),
                        "email": self.email() if n == 0 else None,
                        "name": f"{first} {last}",
                    },
                    TRUTH_PROPERTY: self.truth,
                },
                at + timedelta(minutes=2 * n),
            )
        call_at = self.later(86400, 2 * 86400)
        caller = "unknown" if self.rnd.random() < 0.05 else self.phone()
        self.hook(
            "calls",
            {
                "call_id": self.uid("call"),
                "direction": "inbound",
                "caller": caller,
                "caller_name": f"{last}, {first}",
                "started_at": call_at.isoformat(),
                "duration_s": self.rnd.randint(60, 900),
                "queue": "service",
                "agent_id": f"agent-{self.rnd.randint(1, 30)}",
                "ticket_id": ticket,
                TRUTH_PROPERTY: self.truth,
            },
            call_at,
        )
        for kind, status in (("ticket.updated", "pending"), ("ticket.solved", "solved")):
            solved_at = self.later(3600, 86400)
            requester = {"name": f"{first} {last}", "email": self.email(), "phone": self.phone()}
            if p.customer_id:
                requester["external_id"] = p.customer_id
            self.hook(
                "support",
                {
                    "id": self.uid("hd"),
                    "event": kind,
                    "occurred_at": solved_at.isoformat(),
                    "ticket": {
                        "id": ticket,
                        "status": status,
                        "via": "email" if status == "solved" else "phone",
                    },
                    "requester": requester,
                    TRUTH_PROPERTY: self.truth,
                },
                solved_at,
            )

    def messages(self) -> None:
        p = self.person
        whatsapp = self.rnd.random() < 0.6
        number = "+49" + p.phone
        at = self.later(3600, 10 * 86400)
        body = {
            "MessageSid": f"SM{self.rnd.getrandbits(128):032x}",
            "From": f"whatsapp:{number}" if whatsapp else number,
            "To": "whatsapp:+4930555123" if whatsapp else "+4930555123",
            "Body": "Hallo, ist meine Bestellung abholbereit?",
            "Direction": "inbound",
            "SmsStatus": "received",
            "NumSegments": "1",
            "Timestamp": at.isoformat(),
            TRUTH_PROPERTY: self.truth,
        }
        if whatsapp:
            body["ProfileName"] = p.first_name
        self.hook("twilio", body, at)
        if p.messenger_psid:
            at = self.later(3600, 5 * 86400)
            self.hook(
                "messenger",
                {
                    "object": "page",
                    "entry": [
                        {
                            "id": "104455667788990",
                            "time": int(at.timestamp() * 1000),
                            "messaging": [
                                {
                                    "sender": {"id": p.messenger_psid},
                                    "recipient": {"id": "104455667788990"},
                                    "timestamp": int(at.timestamp() * 1000),
                                    "message": {"mid": self.uid("m"), "text": "Habt ihr das in M?"},
                                    TRUTH_PROPERTY: self.truth,
                                }
                            ],
                        }
                    ],
                },
                at,
            )
