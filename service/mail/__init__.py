"""Email: rendering messages from template folders, and the senders that deliver them."""

from service.mail.render import EmailRenderer, MailHeaders
from service.mail.senders import CatcherMailer, DeliveryError, Mailer, SMTPMailer

__all__ = ["CatcherMailer", "DeliveryError", "EmailRenderer", "MailHeaders", "Mailer", "SMTPMailer"]
