from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from models.account import Role
from models.audit import AccessAction, AccessBasis, ActorRole
from models.base import utcnow
from models.consent import ConsentAccess
from models.document import DocumentCategory
from models.lifecycle import Channel
from models.outbox import Channel, Status
from models.patient import Sex, SpaceStatus
from models.professional import Profession, Sector
from models.record import ScreeningKind, VaccineCode
from models.reminder import ReminderKind, ReminderStatus
from tortoise.fields.base import OnDelete
from uuid import uuid4
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='Establishment',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('finess', fields.CharField(unique=True, max_length=9)),
                ('name', fields.CharField(default='', max_length=200)),
            ],
            options={'table': 'establishment', 'app': 'models', 'pk_attr': 'id'},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='FailedAttempt',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('key', fields.CharField(db_index=True, max_length=80)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'failed_attempt', 'app': 'models', 'pk_attr': 'id'},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='Operator',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('email', fields.CharField(unique=True, max_length=254)),
            ],
            options={'table': 'operator', 'app': 'models', 'pk_attr': 'id', 'table_description': 'Staff who enrol people and read the lifecycle status of a space, never its health data.'},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='OutboxMessage',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('channel', fields.CharEnumField(description='EMAIL: EMAIL\nPOST: POST', enum_type=Channel, max_length=8)),
                ('recipient', fields.TextField(unique=False)),
                ('subject', fields.CharField(max_length=255)),
                ('body', fields.TextField(unique=False)),
                ('secret', fields.TextField(null=True, unique=False)),
                ('kind', fields.CharField(max_length=40)),
                ('status', fields.CharEnumField(default=Status.PENDING, description='PENDING: PENDING\nSENT: SENT\nPRINTED: PRINTED\nFAILED: FAILED', enum_type=Status, max_length=8)),
                ('attempts', fields.IntField(default=0)),
                ('next_attempt_at', fields.DatetimeField(default=utcnow, auto_now=False, auto_now_add=False)),
                ('claimed_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_error', fields.TextField(null=True, unique=False)),
                ('sent_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'outbox_message', 'app': 'models', 'indexes': [Index(fields=['status', 'next_attempt_at'])], 'pk_attr': 'id'},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='Professional',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('rpps', fields.CharField(unique=True, max_length=11)),
                ('first_name', fields.CharField(max_length=100)),
                ('last_name', fields.CharField(max_length=100)),
                ('profession', fields.CharEnumField(description='MEDECIN: MEDECIN\nPHARMACIEN: PHARMACIEN\nINFIRMIER: INFIRMIER\nSAGE_FEMME: SAGE_FEMME\nCHIRURGIEN_DENTISTE: CHIRURGIEN_DENTISTE\nMASSEUR_KINESITHERAPEUTE: MASSEUR_KINESITHERAPEUTE\nPSYCHOLOGUE: PSYCHOLOGUE\nASSISTANT_SERVICE_SOCIAL: ASSISTANT_SERVICE_SOCIAL\nEDUCATEUR_SPECIALISE: EDUCATEUR_SPECIALISE\nOTHER: OTHER', enum_type=Profession, max_length=32)),
                ('sector', fields.CharEnumField(description='HEALTH: HEALTH\nMEDICO_SOCIAL: MEDICO_SOCIAL\nSOCIAL: SOCIAL', enum_type=Sector, max_length=16)),
                ('establishment', fields.ForeignKeyField('models.Establishment', source_field='establishment_id', null=True, db_constraint=True, to_field='id', related_name='professionals', on_delete=OnDelete.SET_NULL)),
            ],
            options={'table': 'professional', 'app': 'models', 'indexes': [Index(fields=['last_name', 'first_name'])], 'pk_attr': 'id'},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='Patient',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('nir_encrypted', fields.BinaryField(null=True)),
                ('nir_hash', fields.CharField(unique=True, max_length=64)),
                ('first_name', fields.CharField(max_length=100)),
                ('last_name', fields.CharField(max_length=100)),
                ('birth_date', fields.DateField()),
                ('sex', fields.CharEnumField(description='FEMALE: FEMALE\nMALE: MALE', enum_type=Sex, max_length=8)),
                ('status', fields.CharEnumField(default=SpaceStatus.PENDING, description='PENDING: PENDING\nACTIVE: ACTIVE\nOPPOSED: OPPOSED\nCLOSED: CLOSED', enum_type=SpaceStatus, max_length=8)),
                ('contact_email', fields.CharField(null=True, max_length=254)),
                ('postal_address', fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('activated_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('opposed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('closed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('archived_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('delete_by', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('emergency_access_opposed', fields.BooleanField(default=False)),
                ('treating_doctor', fields.ForeignKeyField('models.Professional', source_field='treating_doctor_id', null=True, db_constraint=True, to_field='id', related_name='treated_patients', on_delete=OnDelete.SET_NULL)),
            ],
            options={'table': 'patient', 'app': 'models', 'indexes': [Index(fields=['last_name', 'first_name'])], 'pk_attr': 'id'},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='AccessEvent',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('patient', fields.ForeignKeyField('models.Patient', source_field='patient_id', db_constraint=True, to_field='id', related_name='access_events', on_delete=OnDelete.CASCADE)),
                ('actor_id', fields.UUIDField()),
                ('actor_role', fields.CharEnumField(description='PATIENT: PATIENT\nPROFESSIONAL: PROFESSIONAL\nOPERATOR: OPERATOR\nPARTNER_APP: PARTNER_APP', enum_type=ActorRole, max_length=16)),
                ('action', fields.CharEnumField(description='READ: READ\nWRITE: WRITE\nDOWNLOAD: DOWNLOAD\nLOOKUP: LOOKUP\nEMERGENCY_OPEN: EMERGENCY_OPEN', enum_type=AccessAction, max_length=16)),
                ('basis', fields.CharEnumField(description='CONSENT: CONSENT\nTREATING_DOCTOR: TREATING_DOCTOR\nEMERGENCY: EMERGENCY\nREPRESENTATIVE: REPRESENTATIVE\nAUTHOR: AUTHOR\nCONVERSATION: CONVERSATION\nOPERATOR: OPERATOR\nAPP: APP\nLOOKUP: LOOKUP', enum_type=AccessBasis, max_length=16)),
                ('document_id', fields.UUIDField(null=True)),
                ('request_id', fields.CharField(max_length=32)),
            ],
            options={'table': 'access_event', 'app': 'models', 'indexes': [Index(fields=['patient_id', 'at'])], 'pk_attr': 'id', 'table_description': 'Never updated nor deleted while the space exists (no API writes but `record`).'},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='Account',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('email', fields.CharField(unique=True, max_length=254)),
                ('password_hash', fields.CharField(null=True, max_length=255)),
                ('role', fields.CharEnumField(description='PATIENT: PATIENT\nPROFESSIONAL: PROFESSIONAL\nOPERATOR: OPERATOR', enum_type=Role, max_length=16)),
                ('patient', fields.OneToOneField('models.Patient', source_field='patient_id', null=True, db_constraint=True, to_field='id', related_name='account', on_delete=OnDelete.CASCADE)),
                ('professional', fields.OneToOneField('models.Professional', source_field='professional_id', null=True, db_constraint=True, to_field='id', related_name='account', on_delete=OnDelete.CASCADE)),
                ('operator', fields.OneToOneField('models.Operator', source_field='operator_id', null=True, db_constraint=True, to_field='id', related_name='account', on_delete=OnDelete.CASCADE)),
            ],
            options={'table': 'account', 'app': 'models', 'pk_attr': 'id'},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='ActivationCode',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('patient', fields.ForeignKeyField('models.Patient', source_field='patient_id', db_constraint=True, to_field='id', related_name='activation_codes', on_delete=OnDelete.CASCADE)),
                ('code_hash', fields.CharField(max_length=64)),
                ('channel', fields.CharEnumField(description='EMAIL: EMAIL\nPOST: POST', enum_type=Channel, max_length=8)),
                ('sent_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('superseded_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'activation_code', 'app': 'models', 'pk_attr': 'id'},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='Block',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('patient', fields.ForeignKeyField('models.Patient', source_field='patient_id', db_constraint=True, to_field='id', related_name='blocks', on_delete=OnDelete.CASCADE)),
                ('professional', fields.ForeignKeyField('models.Professional', source_field='professional_id', db_constraint=True, to_field='id', related_name='blocks', on_delete=OnDelete.CASCADE)),
            ],
            options={'table': 'block', 'app': 'models', 'unique_together': (('patient', 'professional'),), 'pk_attr': 'id', 'table_description': 'A blocked professional sees nothing of the space, whatever consent exists.'},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='Consent',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('patient', fields.ForeignKeyField('models.Patient', source_field='patient_id', db_constraint=True, to_field='id', related_name='consents', on_delete=OnDelete.CASCADE)),
                ('professional', fields.ForeignKeyField('models.Professional', source_field='professional_id', db_constraint=True, to_field='id', related_name='consents', on_delete=OnDelete.CASCADE)),
                ('access', fields.CharEnumField(description='READ: READ\nREAD_WRITE: READ_WRITE', enum_type=ConsentAccess, max_length=16)),
                ('granted_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'consent', 'app': 'models', 'indexes': [Index(fields=['professional_id', 'patient_id'])], 'pk_attr': 'id'},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='Document',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('patient', fields.ForeignKeyField('models.Patient', source_field='patient_id', db_constraint=True, to_field='id', related_name='documents', on_delete=OnDelete.CASCADE)),
                ('title', fields.CharField(max_length=200)),
                ('category', fields.CharEnumField(description='PRESCRIPTION: PRESCRIPTION\nLAB_RESULT: LAB_RESULT\nIMAGING: IMAGING\nREPORT: REPORT\nTREATMENT: TREATMENT\nVACCINATION: VACCINATION\nADMINISTRATIVE: ADMINISTRATIVE\nOTHER: OTHER', enum_type=DocumentCategory, max_length=16)),
                ('date', fields.DateField()),
                ('mime_type', fields.CharField(max_length=64)),
                ('size', fields.IntField()),
                ('sha256', fields.CharField(db_index=True, max_length=64)),
                ('hidden', fields.BooleanField(default=False)),
                ('hidden_from_representatives', fields.BooleanField(default=False)),
                ('author_patient', fields.ForeignKeyField('models.Patient', source_field='author_patient_id', null=True, db_constraint=True, to_field='id', related_name='authored_documents', on_delete=OnDelete.SET_NULL)),
                ('author_professional', fields.ForeignKeyField('models.Professional', source_field='author_professional_id', null=True, db_constraint=True, to_field='id', related_name='authored_documents', on_delete=OnDelete.SET_NULL)),
            ],
            options={'table': 'document', 'app': 'models', 'indexes': [Index(fields=['patient_id', 'date', 'created_at'])], 'pk_attr': 'id'},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='EmergencyAccess',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('patient', fields.ForeignKeyField('models.Patient', source_field='patient_id', db_constraint=True, to_field='id', related_name='emergency_accesses', on_delete=OnDelete.CASCADE)),
                ('professional', fields.ForeignKeyField('models.Professional', source_field='professional_id', db_constraint=True, to_field='id', related_name='emergency_accesses', on_delete=OnDelete.CASCADE)),
                ('reason', fields.TextField(unique=False)),
                ('opened_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'emergency_access', 'app': 'models', 'indexes': [Index(fields=['professional_id', 'patient_id'])], 'pk_attr': 'id'},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='HealthProfile',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('patient', fields.OneToOneField('models.Patient', source_field='patient_id', db_constraint=True, to_field='id', related_name='health_profile', on_delete=OnDelete.CASCADE)),
                ('allergies', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('treatments', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('history', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('measurements', fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('advance_directives', fields.TextField(null=True, unique=False)),
                ('trusted_person', fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'health_profile', 'app': 'models', 'pk_attr': 'id', 'table_description': 'One per patient. Each section is replaced as a whole when it is updated.'},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='LoginChallenge',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('account', fields.ForeignKeyField('models.Account', source_field='account_id', db_constraint=True, to_field='id', related_name='challenges', on_delete=OnDelete.CASCADE)),
                ('code_hash', fields.CharField(max_length=64)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('failures', fields.IntField(default=0)),
            ],
            options={'table': 'login_challenge', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A pending two-factor login: the one-time code went out by e-mail.'},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='Reminder',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('patient', fields.ForeignKeyField('models.Patient', source_field='patient_id', db_constraint=True, to_field='id', related_name='reminders', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharEnumField(description='APPOINTMENT: APPOINTMENT\nSCREENING: SCREENING\nVACCINATION: VACCINATION\nEMERGENCY_ACCESS: EMERGENCY_ACCESS', enum_type=ReminderKind, max_length=24)),
                ('key', fields.CharField(max_length=120)),
                ('rule', fields.CharField(max_length=40)),
                ('title', fields.CharField(max_length=200)),
                ('reason', fields.TextField(unique=False)),
                ('due_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('status', fields.CharEnumField(default=ReminderStatus.PENDING, description='PENDING: PENDING\nSENT: SENT\nDISMISSED: DISMISSED', enum_type=ReminderStatus, max_length=16)),
                ('sent_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('dismissed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'reminder', 'app': 'models', 'unique_together': (('patient', 'key'),), 'indexes': [Index(fields=['status', 'due_at'])], 'pk_attr': 'id'},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='Representation',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('representative', fields.ForeignKeyField('models.Patient', source_field='representative_id', db_constraint=True, to_field='id', related_name='dependent_links', on_delete=OnDelete.CASCADE)),
                ('dependent', fields.ForeignKeyField('models.Patient', source_field='dependent_id', db_constraint=True, to_field='id', related_name='representative_links', on_delete=OnDelete.CASCADE)),
            ],
            options={'table': 'representation', 'app': 'models', 'unique_together': (('representative', 'dependent'),), 'pk_attr': 'id', 'table_description': 'A legal representative of a minor. The link ends by itself on the 18th birthday.'},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='Screening',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('patient', fields.ForeignKeyField('models.Patient', source_field='patient_id', db_constraint=True, to_field='id', related_name='screenings', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharEnumField(description='BREAST: BREAST\nCOLORECTAL: COLORECTAL\nCERVICAL_CYTOLOGY: CERVICAL_CYTOLOGY\nCERVICAL_HPV: CERVICAL_HPV', enum_type=ScreeningKind, max_length=24)),
                ('date', fields.DateField()),
                ('result', fields.CharField(null=True, max_length=500)),
            ],
            options={'table': 'screening', 'app': 'models', 'indexes': [Index(fields=['patient_id', 'date'])], 'pk_attr': 'id'},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='Session',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('token_hash', fields.CharField(unique=True, max_length=64)),
                ('account', fields.ForeignKeyField('models.Account', source_field='account_id', db_constraint=True, to_field='id', related_name='sessions', on_delete=OnDelete.CASCADE)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'session', 'app': 'models', 'pk_attr': 'id'},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='Vaccination',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('patient', fields.ForeignKeyField('models.Patient', source_field='patient_id', db_constraint=True, to_field='id', related_name='vaccinations', on_delete=OnDelete.CASCADE)),
                ('vaccine', fields.CharEnumField(description='DTP: DTP\nDTCAP: DTCAP\nINFLUENZA: INFLUENZA\nPNEUMOCOCCAL: PNEUMOCOCCAL\nZOSTER: ZOSTER\nCOVID19: COVID19\nHPV: HPV\nMMR: MMR\nHEPATITIS_B: HEPATITIS_B\nOTHER: OTHER', enum_type=VaccineCode, max_length=16)),
                ('date', fields.DateField()),
                ('dose_number', fields.IntField(null=True)),
                ('lot_number', fields.CharField(null=True, max_length=64)),
                ('professional', fields.ForeignKeyField('models.Professional', source_field='professional_id', null=True, db_constraint=True, to_field='id', related_name='vaccinations', on_delete=OnDelete.SET_NULL)),
            ],
            options={'table': 'vaccination', 'app': 'models', 'indexes': [Index(fields=['patient_id', 'date'])], 'pk_attr': 'id'},
            bases=['Entity'],
        ),
    ]
