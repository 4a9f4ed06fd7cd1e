"""Texts in each language a list can speak: the widget, the pages and the emails.

A plain catalog, one dict per language, with English as the fallback for any missing key.
Placeholders are ``{list}``, ``{email}``, ``{site}``, ``{valid_for}``, ``{status}``.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape

__all__ = ["LANGUAGES", "duration", "fill", "negotiate", "texts"]

LANGUAGES = ("en", "de", "fr")

EN = {
    # Widget
    "title": "Get our newsletter",
    "text": "The best stories, in your inbox. Free, and you can unsubscribe at any time.",
    "button": "Subscribe",
    "success": "Almost done! Check your inbox and click the link to confirm your subscription.",
    "consent": "By subscribing you agree to get {list} by email. "
    "You can unsubscribe at any time with one click.",
    "email_label": "Email address",
    "name_label": "First name (optional)",
    "close": "Close",
    "invalid_email": "Please enter a valid email address.",
    "consent_required": "Please tick the box to agree.",
    "sending": "Sending…",
    "too_many": "Too many attempts. Please try again later.",
    "too_many_until": "Too many attempts. Please try again after {time}.",
    "network": "Something went wrong. Please try again.",
    "not_allowed": "Signups from this site are not enabled for this newsletter.",
    "privacy": "Privacy policy",
    # Pages
    "confirm_title": "Confirm your subscription",
    "confirm_question": "Subscribe {email} to the newsletter {list}?",
    "confirm_button": "Yes, subscribe me",
    "confirm_ignore": "Didn't ask for this? Just close this page: nothing happens unless you "
    "press the button.",
    "confirmed_title": "You're subscribed",
    "confirmed_text": "You get the newsletter {list}. Thank you!",
    "resubscribe_title": "You unsubscribed",
    "resubscribe_text": "This address unsubscribed from the newsletter {list}. Changed your mind?",
    "resubscribe_button": "Subscribe again",
    "resubscribe_note": "We will send a new confirmation email; nothing changes until you "
    "click the link in it.",
    "resubscribe_note_single": "You will be subscribed again at once, and can leave again in "
    "one click from any newsletter.",
    "newer_link_title": "Please use the newest email",
    "newer_link_text": "We have sent you a newer confirmation email for {list}: the link in "
    "that one confirms your subscription.",
    "confirmed_note": "Every newsletter has a link to unsubscribe in one click.",
    "unsubscribe_title": "Unsubscribe",
    "unsubscribe_question": "Stop sending the newsletter {list} to {email}?",
    "unsubscribe_button": "Unsubscribe",
    "unsubscribed_title": "You're unsubscribed",
    "unsubscribed_text": "{email} will not get the newsletter {list} any more.",
    "unsubscribed_note": "Changed your mind? Sign up again with the form on the site whenever "
    "you like.",
    "invalid_title": "This link is not valid any more",
    "invalid_why": "It may have expired, been used already, or been copied incompletely.",
    "invalid_next": "If you signed up more than once, use the link in the newest email. "
    "Otherwise, sign up again with the form on the site and use the link in the new email.",
    "result_ok_title": "Almost done",
    "result_ok_text": "Please check your inbox and click the link to confirm your subscription.",
    "result_spam": "No email after a few minutes? Look in your spam folder.",
    "result_error_title": "Your signup did not go through",
    "back_to_site": "Back to {site}",
    "result_fix": "Please correct it and try again.",
    "needs_javascript": "To keep robots out, this list's signup form needs JavaScript: please "
    "turn it on in your browser and try again.",
    "pow_retry": "The form's check against robots did not pass (the page may have been open "
    "too long). Please go back, reload the page and try again.",
    "too_fast": "That was quicker than a person usually fills in the form, so our check "
    "against robots needs JavaScript this time. Please go back, wait a moment and send the "
    "form again, or turn JavaScript on.",
    "field_email": "Email",
    "field_name": "Name",
    "field_page_url": "Page",
    "field_consent": "Consent",
    "error_title": "Sorry, that did not work",
    "error_code": "Error {status}",
    # Emails
    "hello": "Hello,",
    "confirm_subject": "Confirm your subscription to {list}",
    "confirm_intro": "Someone, hopefully you, asked to subscribe this address to the "
    "newsletter {list}.",
    "confirm_open": "To confirm, open this link and press the button on the page:",
    "confirm_validity": "The link is valid for {valid_for}. If you did not ask for this, ignore "
    "this email: you will not be subscribed and will not hear from us again.",
    "copy_link": "Button not working? Copy this address into your browser:",
    "footer": "You received this email because this address was entered in the signup form of "
    "{list} ({site}).",
    "footer_added": "You received this email because the publisher of {list} added this "
    "address to its readers; it stays off the list unless you confirm.",
    "footer_imported": "You received this email because this address was added to the "
    "readers of {list} from a list the publisher brought along; it stays off the list unless "
    "you confirm.",
    "unsubscribe_link": "Unsubscribe",
    "welcome_subject": "You are subscribed to {list}",
    "welcome_title": "You are subscribed",
    "welcome_text": "This address is now subscribed to the newsletter {list}. Thank you!",
    "units": "day,days,hour,hours,minute,minutes,second,seconds",
}

DE = {
    "title": "Unser Newsletter",
    "text": "Die besten Geschichten direkt in Ihr Postfach. Kostenlos und jederzeit abbestellbar.",
    "button": "Abonnieren",
    "success": "Fast geschafft! Bitte bestätigen Sie Ihr Abonnement über den Link in der E-Mail, "
    "die wir Ihnen gerade geschickt haben.",
    "consent": "Mit dem Abonnieren willigen Sie ein, {list} per E-Mail zu erhalten. Sie können "
    "sich jederzeit mit einem Klick abmelden.",
    "email_label": "E-Mail-Adresse",
    "name_label": "Vorname (optional)",
    "close": "Schließen",
    "invalid_email": "Bitte geben Sie eine gültige E-Mail-Adresse ein.",
    "consent_required": "Bitte setzen Sie das Häkchen, um einzuwilligen.",
    "sending": "Wird gesendet …",
    "too_many": "Zu viele Versuche. Bitte versuchen Sie es später noch einmal.",
    "too_many_until": "Zu viele Versuche. Bitte versuchen Sie es nach {time} Uhr noch einmal.",
    "network": "Etwas ist schiefgegangen. Bitte versuchen Sie es noch einmal.",
    "not_allowed": "Anmeldungen von dieser Website sind für diesen Newsletter nicht "
    "freigeschaltet.",
    "privacy": "Datenschutzerklärung",
    "confirm_title": "Abonnement bestätigen",
    "confirm_question": "Soll {email} den Newsletter {list} erhalten?",
    "confirm_button": "Ja, ich möchte den Newsletter",
    "confirm_ignore": "Sie haben das nicht angefordert? Schließen Sie einfach diese Seite: Ohne "
    "Klick auf den Knopf passiert nichts.",
    "confirmed_title": "Sie haben den Newsletter abonniert",
    "confirmed_text": "Sie erhalten ab jetzt den Newsletter {list}. Vielen Dank!",
    "resubscribe_title": "Sie haben sich abgemeldet",
    "resubscribe_text": "Diese Adresse hat den Newsletter {list} abbestellt. Haben Sie es sich "
    "anders überlegt?",
    "resubscribe_button": "Wieder abonnieren",
    "resubscribe_note": "Wir senden Ihnen eine neue Bestätigungs-E-Mail; erst wenn Sie auf den "
    "Link darin klicken, ändert sich etwas.",
    "resubscribe_note_single": "Sie sind dann sofort wieder angemeldet und können sich aus "
    "jedem Newsletter mit einem Klick wieder abmelden.",
    "newer_link_title": "Bitte nutzen Sie die neueste E-Mail",
    "newer_link_text": "Wir haben Ihnen eine neuere Bestätigungs-E-Mail für {list} gesendet: "
    "Der Link darin bestätigt Ihr Abonnement.",
    "confirmed_note": "Jeder Newsletter enthält einen Link, mit dem Sie sich mit einem Klick "
    "abmelden können.",
    "unsubscribe_title": "Abmelden",
    "unsubscribe_question": "Den Newsletter {list} nicht mehr an {email} senden?",
    "unsubscribe_button": "Abmelden",
    "unsubscribed_title": "Sie sind abgemeldet",
    "unsubscribed_text": "{email} erhält den Newsletter {list} nicht mehr.",
    "unsubscribed_note": "Meinung geändert? Sie können sich jederzeit über das Formular auf der "
    "Website wieder anmelden.",
    "invalid_title": "Dieser Link ist nicht mehr gültig",
    "invalid_why": "Er ist vielleicht abgelaufen, wurde schon benutzt oder nicht vollständig "
    "kopiert.",
    "invalid_next": "Wenn Sie sich mehrmals angemeldet haben, nutzen Sie den Link in der neuesten "
    "E-Mail. Sonst melden Sie sich bitte erneut über das Formular auf der Website an und nutzen "
    "den Link in der neuen E-Mail.",
    "result_ok_title": "Fast geschafft",
    "result_ok_text": "Bitte sehen Sie in Ihr Postfach und bestätigen Sie Ihr Abonnement über "
    "den Link.",
    "result_spam": "Nach ein paar Minuten noch keine E-Mail? Sehen Sie im Spam-Ordner nach.",
    "result_error_title": "Ihre Anmeldung hat nicht geklappt",
    "back_to_site": "Zurück zu {site}",
    "result_fix": "Bitte korrigieren Sie die Angaben und versuchen Sie es noch einmal.",
    "needs_javascript": "Zum Schutz vor Robotern braucht das Anmeldeformular dieser Liste "
    "JavaScript: Bitte schalten Sie es in Ihrem Browser ein und versuchen Sie es noch einmal.",
    "pow_retry": "Die Prüfung gegen Roboter hat nicht geklappt (vielleicht war die Seite zu "
    "lange offen). Bitte gehen Sie zurück, laden Sie die Seite neu und versuchen Sie es noch "
    "einmal.",
    "too_fast": "Das ging schneller, als Menschen das Formular meist ausfüllen, deshalb braucht "
    "unsere Prüfung gegen Roboter diesmal JavaScript. Bitte gehen Sie zurück, warten Sie einen "
    "Moment und senden Sie das Formular noch einmal, oder schalten Sie JavaScript ein.",
    "field_email": "E-Mail",
    "field_name": "Name",
    "field_page_url": "Seite",
    "field_consent": "Einwilligung",
    "error_title": "Das hat leider nicht geklappt",
    "error_code": "Fehler {status}",
    "hello": "Hallo,",
    "confirm_subject": "Bitte bestätigen Sie Ihr Abonnement von {list}",
    "confirm_intro": "Jemand, hoffentlich Sie, möchte diese Adresse für den Newsletter {list} "
    "anmelden.",
    "confirm_open": "Zum Bestätigen öffnen Sie diesen Link und klicken auf der Seite auf den "
    "Knopf:",
    "confirm_validity": "Der Link ist {valid_for} gültig. Wenn Sie das nicht angefordert haben, "
    "ignorieren Sie diese E-Mail: Sie werden nicht angemeldet und hören nichts mehr von uns.",
    "copy_link": "Der Knopf funktioniert nicht? Kopieren Sie diese Adresse in Ihren Browser:",
    "footer": "Sie erhalten diese E-Mail, weil diese Adresse im Anmeldeformular von {list} "
    "({site}) eingegeben wurde.",
    "footer_added": "Sie erhalten diese E-Mail, weil der Herausgeber von {list} diese "
    "Adresse eingetragen hat; sie bleibt nur auf der Liste, wenn Sie bestätigen.",
    "footer_imported": "Sie erhalten diese E-Mail, weil der Herausgeber von {list} diese "
    "Adresse aus einer mitgebrachten Liste übernommen hat; ohne Ihre Bestätigung bleibt sie "
    "nicht auf der Liste.",
    "unsubscribe_link": "Abmelden",
    "welcome_subject": "Sie haben {list} abonniert",
    "welcome_title": "Sie haben den Newsletter abonniert",
    "welcome_text": "Diese Adresse erhält ab jetzt den Newsletter {list}. Vielen Dank!",
    "units": "Tag,Tage,Stunde,Stunden,Minute,Minuten,Sekunde,Sekunden",
}

FR = {
    "title": "Notre newsletter",
    "text": "Le meilleur de nos articles dans votre boîte mail. Gratuit, désinscription à "
    "tout moment.",
    "button": "S'abonner",
    "success": "C'est presque fini ! Consultez votre boîte mail et cliquez sur le lien pour "
    "confirmer votre abonnement.",
    "consent": "En vous abonnant, vous acceptez de recevoir {list} par e-mail. Vous pouvez vous "
    "désinscrire à tout moment en un clic.",
    "email_label": "Adresse e-mail",
    "name_label": "Prénom (facultatif)",
    "close": "Fermer",
    "invalid_email": "Veuillez saisir une adresse e-mail valide.",
    "consent_required": "Veuillez cocher la case pour donner votre accord.",
    "sending": "Envoi…",
    "too_many": "Trop de tentatives. Veuillez réessayer plus tard.",
    "too_many_until": "Trop de tentatives. Veuillez réessayer après {time}.",
    "network": "Une erreur s'est produite. Veuillez réessayer.",
    "not_allowed": "Les inscriptions depuis ce site ne sont pas activées pour cette newsletter.",
    "privacy": "Politique de confidentialité",
    "confirm_title": "Confirmez votre abonnement",
    "confirm_question": "Abonner {email} à la newsletter {list} ?",
    "confirm_button": "Oui, je m'abonne",
    "confirm_ignore": "Vous n'avez rien demandé ? Fermez simplement cette page : rien ne se passe "
    "tant que vous n'appuyez pas sur le bouton.",
    "confirmed_title": "Vous êtes abonné",
    "confirmed_text": "Vous recevez désormais la newsletter {list}. Merci !",
    "resubscribe_title": "Vous vous êtes désinscrit",
    "resubscribe_text": "Cette adresse s'est désinscrite de la newsletter {list}. Vous avez "
    "changé d'avis ?",
    "resubscribe_button": "Me réabonner",
    "resubscribe_note": "Nous vous enverrons un nouvel e-mail de confirmation ; rien ne change "
    "tant que vous n'avez pas cliqué sur son lien.",
    "resubscribe_note_single": "Vous serez réabonné aussitôt, et pourrez vous désinscrire en un "
    "clic depuis chaque newsletter.",
    "newer_link_title": "Utilisez le dernier e-mail",
    "newer_link_text": "Nous vous avons envoyé un e-mail de confirmation plus récent pour {list} "
    ": c'est son lien qui confirme votre abonnement.",
    "confirmed_note": "Chaque newsletter contient un lien pour vous désinscrire en un clic.",
    "unsubscribe_title": "Se désinscrire",
    "unsubscribe_question": "Ne plus envoyer la newsletter {list} à {email} ?",
    "unsubscribe_button": "Me désinscrire",
    "unsubscribed_title": "Vous êtes désinscrit",
    "unsubscribed_text": "{email} ne recevra plus la newsletter {list}.",
    "unsubscribed_note": "Vous avez changé d'avis ? Réinscrivez-vous quand vous voulez avec le "
    "formulaire du site.",
    "invalid_title": "Ce lien n'est plus valide",
    "invalid_why": "Il a peut-être expiré, déjà été utilisé, ou été copié incomplètement.",
    "invalid_next": "Si vous vous êtes inscrit plusieurs fois, utilisez le lien du dernier "
    "e-mail. Sinon, inscrivez-vous à nouveau avec le formulaire du site et utilisez le lien du "
    "nouvel e-mail.",
    "result_ok_title": "C'est presque fini",
    "result_ok_text": "Consultez votre boîte mail et cliquez sur le lien pour confirmer votre "
    "abonnement.",
    "result_spam": "Pas d'e-mail après quelques minutes ? Regardez dans vos courriers "
    "indésirables.",
    "result_error_title": "Votre inscription n'a pas abouti",
    "back_to_site": "Retour à {site}",
    "result_fix": "Veuillez corriger et réessayer.",
    "needs_javascript": "Pour tenir les robots à l'écart, le formulaire d'inscription de cette "
    "liste a besoin de JavaScript : veuillez l'activer dans votre navigateur et réessayer.",
    "pow_retry": "La vérification anti-robots n'a pas abouti (la page est peut-être restée "
    "ouverte trop longtemps). Veuillez revenir en arrière, recharger la page et réessayer.",
    "too_fast": "C'était plus rapide que ce qu'une personne met d'habitude à remplir le "
    "formulaire : notre vérification anti-robots a donc besoin de JavaScript cette fois. "
    "Veuillez revenir en arrière, patienter un instant et renvoyer le formulaire, ou activer "
    "JavaScript.",
    "field_email": "E-mail",
    "field_name": "Nom",
    "field_page_url": "Page",
    "field_consent": "Consentement",
    "error_title": "Désolé, cela n'a pas fonctionné",
    "error_code": "Erreur {status}",
    "hello": "Bonjour,",
    "confirm_subject": "Confirmez votre abonnement à {list}",
    "confirm_intro": "Quelqu'un, vous-même espérons-le, a demandé à inscrire cette adresse à la "
    "newsletter {list}.",
    "confirm_open": "Pour confirmer, ouvrez ce lien et appuyez sur le bouton de la page :",
    "confirm_validity": "Le lien est valable {valid_for}. Si vous n'avez rien demandé, ignorez "
    "cet e-mail : vous ne serez pas inscrit et n'aurez plus de nouvelles de nous.",
    "copy_link": "Le bouton ne fonctionne pas ? Copiez cette adresse dans votre navigateur :",
    "footer": "Vous recevez cet e-mail parce que cette adresse a été saisie dans le formulaire "
    "d'inscription de {list} ({site}).",
    "footer_added": "Vous recevez cet e-mail parce que l'éditeur de {list} a ajouté cette "
    "adresse à ses lecteurs ; elle n'y reste que si vous confirmez.",
    "footer_imported": "Vous recevez cet e-mail parce que l'éditeur de {list} a repris cette "
    "adresse d'une liste existante ; sans votre confirmation, elle ne reste pas sur la liste.",
    "unsubscribe_link": "Se désinscrire",
    "welcome_subject": "Vous êtes abonné à {list}",
    "welcome_title": "Vous êtes abonné",
    "welcome_text": "Cette adresse est désormais abonnée à la newsletter {list}. Merci !",
    "units": "jour,jours,heure,heures,minute,minutes,seconde,secondes",
}

_CATALOGS = {"en": EN, "de": DE, "fr": FR}


def texts(language: str) -> dict[str, str]:
    """Every text in ``language``, English where a translation is missing."""
    return {**EN, **_CATALOGS.get(language, {})}


def negotiate(accept_language: str | None) -> str:
    """The best of our languages for an ``Accept-Language`` header (for pages with no list)."""
    choices: list[tuple[float, int, str]] = []
    for index, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in _CATALOGS and quality > 0:
            choices.append((-quality, index, primary))
    return min(choices)[2] if choices else "en"


def duration(seconds: float, language: str) -> str:
    """``3 days``, ``3 Tage``, ``3 jours``: the largest whole unit that fits exactly."""
    names = texts(language)["units"].split(",")
    for index, size in enumerate((86400, 3600, 60, 1)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {names[2 * index + (count != 1)]}"
    return f"{round(seconds)} {names[7]}"


def fill(text: str, **values: Any) -> Markup:
    """A catalog text for HTML with its placeholders filled in, escaped and in bold."""
    strong = {k: Markup("<strong>{}</strong>").format(v) for k, v in values.items()}
    return Markup(escape(text)).format(**strong)  # noqa: S704 - text and values are escaped
